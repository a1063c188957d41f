"""moto_server with CloudFormation handlers for the resource types moto 5.2 cannot create (run as a script).

moto's CloudFormation skips a resource type it has no model for, with a warning, and the stack says
CREATE_COMPLETE without it. The project's templates use types moto lacks, so each gets an explicit stand-in
here: a ``CloudFormationModel`` that makes the calls the real resource handler makes, on moto's own backend:

========================================  ============================================================
``AWS::SageMaker::Pipeline``              CreatePipeline / UpdatePipeline (definition, role, tags) / DeletePipeline
``AWS::Scheduler::Schedule``              CreateSchedule / UpdateSchedule / DeleteSchedule
``AWS::SageMaker::ModelPackageGroup``     CreateModelPackageGroup (tags) / delete, refused while it has versions
========================================  ============================================================

Anything still unsupported fails the stack (:data:`STRICT`): moto's warning is turned into an error, so no
resource is skipped silently. ``python tests/moto_standins.py -H 127.0.0.1 -p PORT`` runs the server.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import Any

from moto.core.common_models import CloudFormationModel

#: moto's warning for a type it cannot create; made an error in the server
STRICT = "Tried to parse .* but it's not supported by moto's CloudFormation implementation"


class _StandIn:
    """A created resource: its physical id (the name) and how to delete it (moto registers only the direct
    subclasses of ``CloudFormationModel``, so each stand-in names it as its second base)."""

    def __init__(self, name: str, delete: Any) -> None:
        self.name = name
        self._delete = delete

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def delete(self, account_id: str, region_name: str) -> None:
        self._delete()


def _sagemaker(account_id: str, region: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account_id][region]


def _scheduler(account_id: str, region: str):
    from moto.scheduler.models import scheduler_backends

    return scheduler_backends[account_id][region]


class Pipeline(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"  # moto's model registry reads the service from the module path

    @staticmethod
    def cloudformation_name_type() -> str:
        return "PipelineName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::Pipeline"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = _sagemaker(account_id, region_name)
        name = properties.get("PipelineName", resource_name)
        backend.create_pipeline(
            pipeline_name=name,
            pipeline_display_name=properties.get("PipelineDisplayName", name),
            pipeline_definition=properties["PipelineDefinition"]["PipelineDefinitionBody"],
            pipeline_definition_s3_location=None,
            pipeline_description=properties.get("PipelineDescription", ""),
            role_arn=properties["RoleArn"],
            tags=properties.get("Tags", []),
            parallelism_configuration=None,
        )
        return cls(name, lambda: backend.delete_pipeline(name))

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        properties = cloudformation_json["Properties"]
        backend = _sagemaker(account_id, region_name)
        backend.update_pipeline(
            original_resource.name,
            pipeline_definition=properties["PipelineDefinition"]["PipelineDefinitionBody"],
            role_arn=properties["RoleArn"],
            pipeline_description=properties.get("PipelineDescription", ""),
        )
        pipeline = backend.pipelines[original_resource.name]  # the handler replaces the tags: DeleteTags, AddTags
        pipeline.tags = list(properties.get("Tags", []))
        return original_resource


class Schedule(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"  # moto's model registry reads the service from the module path

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @staticmethod
    def _request(properties: dict) -> dict:
        return {
            "description": properties.get("Description"),
            "end_date": None,
            "flexible_time_window": properties["FlexibleTimeWindow"],
            "group_name": properties.get("GroupName"),
            "kms_key_arn": None,
            "name": properties["Name"],
            "schedule_expression": properties["ScheduleExpression"],
            "schedule_expression_timezone": properties.get("ScheduleExpressionTimezone"),
            "start_date": None,
            "state": properties.get("State", "ENABLED"),
            "target": properties["Target"],
        }

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = _scheduler(account_id, region_name)
        backend.create_schedule(**cls._request(properties), action_after_completion=None)
        name, group = properties["Name"], properties.get("GroupName")
        return cls(name, lambda: backend.delete_schedule(group, name))

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        properties = cloudformation_json["Properties"]
        _scheduler(account_id, region_name).update_schedule(**cls._request(properties))
        return original_resource


class ModelPackageGroup(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"  # moto's model registry reads the service from the module path

    @staticmethod
    def cloudformation_name_type() -> str:
        return "ModelPackageGroupName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SageMaker::ModelPackageGroup"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = _sagemaker(account_id, region_name)
        name = properties.get("ModelPackageGroupName", resource_name)
        backend.create_model_package_group(
            model_package_group_name=name,
            model_package_group_description=properties.get("ModelPackageGroupDescription", ""),
            tags=properties.get("Tags", []),
        )

        def delete() -> None:  # as SageMaker: a group that still has versions cannot be deleted
            if any(p.model_package_group_name == name for p in backend.model_packages.values()):
                raise RuntimeError(f"model package group {name} still has versions")
            backend.model_package_groups.pop(name)

        return cls(name, delete)


def _without_openapi_validator() -> None:
    """moto's CloudFormation imports its API Gateway models, which import ``openapi_spec_validator`` (the
    ``moto[cloudformation]`` extra, not pinned by this project). No template here imports an OpenAPI document, so
    a module whose validator refuses to run stands in for it."""
    import types

    if importlib.util.find_spec("openapi_spec_validator"):
        return

    def validate(*_args, **_kwargs):
        raise NotImplementedError("openapi_spec_validator is not installed (moto[cloudformation])")

    root = types.ModuleType("openapi_spec_validator")
    root.validate = root.validate_spec = validate
    exceptions = types.ModuleType("openapi_spec_validator.validation.exceptions")
    exceptions.OpenAPIValidationError = type("OpenAPIValidationError", (Exception,), {})
    sys.modules |= {
        "openapi_spec_validator": root,
        "openapi_spec_validator.validation": types.ModuleType("openapi_spec_validator.validation"),
        "openapi_spec_validator.validation.exceptions": exceptions,
    }


def main(argv: list[str]) -> None:
    """Run moto_server with the stand-ins registered and unsupported types made errors."""
    from moto.server import main as serve

    _without_openapi_validator()

    warnings.filterwarnings("error", message=STRICT)
    serve(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
