"""moto_server with CloudFormation handlers for the resource types moto 5.2 cannot create (run as a script).

moto's CloudFormation skips a resource type it has no model for, with a warning, and the stack says
CREATE_COMPLETE without it. The project's templates use types moto lacks, so each gets an explicit stand-in
here: a ``CloudFormationModel`` that makes the calls the real resource handler makes, on moto's own backend:

========================================  ============================================================
``AWS::SageMaker::Pipeline``              CreatePipeline / UpdatePipeline (definition, role, tags) / DeletePipeline
``AWS::Scheduler::Schedule``              CreateSchedule / UpdateSchedule / DeleteSchedule
``AWS::SageMaker::ModelPackageGroup``     CreateModelPackageGroup (tags) / delete, refused while it has versions
``AWS::IAM::OIDCProvider``                CreateOpenIDConnectProvider / DeleteOpenIDConnectProvider
``AWS::S3::BucketPolicy``                 kept, not applied (its TLS-only Deny would refuse moto's plain HTTP)
``AWS::SQS::QueuePolicy``                 SetQueueAttributes(Policy)
``AWS::Lambda::EventInvokeConfig``        PutFunctionEventInvokeConfig / DeleteFunctionEventInvokeConfig
``AWS::ECR::Repository`` (delete)         ``EmptyOnDelete: true`` deletes the images with the repository
``Custom::*`` (with STANDIN_LAMBDA_CODE)  the function's handler module from that folder, run in this process with
                                          the function's environment (moto would need a Lambda container image),
                                          for Create and for Delete (moto sends no Delete to custom resources)
========================================  ============================================================

and the API call ``sagemaker:DeleteModelPackage`` (moto 5.2 has none).

Anything still unsupported fails the stack (:data:`STRICT`): moto's warning is turned into an error, so no
resource is skipped silently. ``python tests/moto_standins.py -H 127.0.0.1 -p PORT`` runs the server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import uuid
import warnings
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

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


class OIDCProvider(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::OIDCProvider"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.iam.models import iam_backends

        properties = cloudformation_json["Properties"]
        backend = iam_backends[account_id]["global"]
        provider = backend.create_open_id_connect_provider(
            properties["Url"], properties.get("ThumbprintList", []), properties.get("ClientIdList", []), []
        )
        return cls(provider.arn, lambda: backend.delete_open_id_connect_provider(provider.arn))


#: the bucket policies the stand-in keeps (by bucket)
BUCKET_POLICIES: dict[str, dict] = {}


class BucketPolicy(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.s3.models import s3_backends

        # kept, not applied: moto would evaluate aws:SecureTransport against its plain-HTTP endpoint and deny all
        properties = cloudformation_json["Properties"]
        bucket = properties["Bucket"]
        s3_backends[account_id]["aws"].get_bucket(bucket)  # the bucket must exist, as for PutBucketPolicy
        BUCKET_POLICIES[bucket] = properties["PolicyDocument"]
        return cls(bucket, lambda: BUCKET_POLICIES.pop(bucket))


class QueuePolicy(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.sqs.models import sqs_backends

        properties = cloudformation_json["Properties"]
        backend = sqs_backends[account_id][region_name]
        names = [queue.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] for queue in properties["Queues"]]
        for name in names:
            backend.set_queue_attributes(name, {"Policy": json.dumps(properties["PolicyDocument"])})

        def delete() -> None:  # removes the policy; a queue deleted before needs nothing
            for name in names:
                if name in backend.queues:
                    backend.set_queue_attributes(name, {"Policy": ""})

        return cls(resource_name, delete)


class EventInvokeConfig(_StandIn, CloudFormationModel):
    __module__ = "moto.standins"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.awslambda.models import lambda_backends

        properties = cloudformation_json["Properties"]
        backend = lambda_backends[account_id][region_name]
        function = properties["FunctionName"]
        config = {
            key: properties[key] for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds") if key in properties
        }
        if "DestinationConfig" in properties:
            config["DestinationConfig"] = properties["DestinationConfig"]
        backend.put_function_event_invoke_config(function, config)  # the function must exist, as for the real call
        return cls(
            f"{function}:{properties.get('Qualifier', '$LATEST')}", lambda: _delete_event_config(backend, function)
        )


def _delete_event_config(backend: Any, function: str) -> None:
    try:  # the function may have gone first
        backend.delete_function_event_invoke_config(function)
    except Exception:
        return


# ---- custom resources: the project's Lambda handlers, run in this process instead of a Lambda container ---------
#: the folder of the Lambda modules (templates/lambdas); their AWS calls go to this server (AWS_ENDPOINT_URL)
LAMBDA_CODE = os.environ.get("STANDIN_LAMBDA_CODE", "")
#: where each handler's AWS calls are recorded for the IAM oracle: <folder>/<function name>.jsonl
CALLS = os.environ.get("STANDIN_CALLS", "")
_LOCK = threading.Lock()


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class _Answers(BaseHTTPRequestHandler):
    """Receives the handlers' custom-resource answers (the pre-signed response URL)."""

    answers: ClassVar[dict[str, dict]] = {}

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.answers[body["RequestId"]] = body
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


_ANSWERS = None


def _answer_url() -> str:
    global _ANSWERS
    if _ANSWERS is None:
        _ANSWERS = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
        threading.Thread(target=_ANSWERS.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{_ANSWERS.server_port}/answer"


def _function(account_id: str, region: str, function_arn: str) -> dict:
    """What a Lambda invocation needs of the function: handler, environment, name."""
    from moto.awslambda.utils import get_backend

    function = get_backend(account_id, region).get_function(function_arn)
    return {"handler": function.handler, "environment": function.environment_vars, "name": function.function_name}


def invoke(function: dict, event: dict) -> dict:
    """Run the function's handler from LAMBDA_CODE with its environment; return its custom-resource answer."""
    import importlib

    module_name, name = function["handler"].rsplit(".", 1)
    event = event | {"ResponseURL": _answer_url(), "RequestId": str(uuid.uuid4())}
    with _LOCK:
        saved = dict(os.environ)
        os.environ.update(function["environment"] or {})
        sys.path.insert(0, LAMBDA_CODE)
        try:
            module = importlib.import_module(module_name)
            log = Path(CALLS) / f"{function['name']}.jsonl"
            with _recording(log):
                getattr(module, name)(event, _Context())
        finally:
            sys.path.remove(LAMBDA_CODE)
            os.environ.clear()
            os.environ.update(saved)
    return _Answers.answers.pop(event["RequestId"])


@contextmanager
def _recording(log: Path):
    import botocore.session

    def record(params=None, model=None, **_):
        service = model.service_model
        prefix = service.metadata.get("signingName") or service.endpoint_prefix
        with log.open("a") as out:
            out.write(json.dumps({"prefix": prefix, "operation": model.name, "params": params}, default=str) + "\n")

    init = botocore.session.Session.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.register("provide-client-params", record)

    import boto3

    boto3.DEFAULT_SESSION = None  # a handler's boto3.client() makes its default session here, recorded to `log`
    botocore.session.Session.__init__ = patched
    try:
        yield
    finally:
        botocore.session.Session.__init__ = init
        boto3.DEFAULT_SESSION = None


def _custom_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    """CloudFormation's Create of a custom resource: the handler runs, its answer sets the resource's data."""
    from moto.cloudformation.custom_model import CustomModel

    properties = cloudformation_json["Properties"]
    event = {
        "RequestType": "Create",
        "ServiceToken": properties["ServiceToken"],
        "StackId": kwargs["StackId"],
        "LogicalResourceId": kwargs["LogicalId"],
        "ResourceType": kwargs["ResourceType"],
        "ResourceProperties": properties,
    }
    function = _function(account_id, region_name, properties["ServiceToken"])
    answer = invoke(function, event)
    if answer["Status"] != "SUCCESS":
        raise RuntimeError(f"custom resource {kwargs['LogicalId']} failed: {answer['Reason']}")
    resource = CustomModel(region_name, answer["RequestId"], kwargs["LogicalId"], answer["PhysicalResourceId"])
    resource.set_data(answer.get("Data", {}))
    resource.standin_event = event | {"PhysicalResourceId": answer["PhysicalResourceId"]}
    resource.standin_function = function  # moto's delete ignores dependencies: the function may go first
    return resource


def _custom_delete(self, account_id: str, region_name: str) -> None:
    """CloudFormation's Delete of a custom resource (moto sends none): the handler must answer SUCCESS."""
    event = self.standin_event | {"RequestType": "Delete"}
    answer = invoke(self.standin_function, event)
    if answer["Status"] != "SUCCESS":
        raise RuntimeError(f"custom resource {self.logical_id} failed to delete: {answer['Reason']}")


def _with_delete_model_package() -> None:
    """SageMaker's DeleteModelPackage, which moto 5.2 lacks (the project's cleanup calls it)."""
    from moto.sagemaker.responses import SageMakerResponse

    def delete_model_package(self) -> str:
        name = json.loads(self.body)["ModelPackageName"]
        packages = self.sagemaker_backend.model_packages
        arn = next((arn for arn, package in packages.items() if name in (arn, package.model_package_name)), None)
        if arn is None:
            raise RuntimeError(f"no model package {name}")
        packages.pop(arn)
        return "{}"

    SageMakerResponse.delete_model_package = delete_model_package


def _with_ecr_empty_on_delete() -> None:
    """``EmptyOnDelete: true`` of ``AWS::ECR::Repository``: CloudFormation deletes the repository with its images
    (moto 5.2 ignores the property and refuses to delete a repository that holds images)."""
    from moto.ecr.models import Repository, ecr_backends

    create = Repository.create_from_cloudformation_json.__func__

    def create_with_flag(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        repository = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        repository.standin_empty_on_delete = bool(cloudformation_json["Properties"].get("EmptyOnDelete", False))
        return repository

    def delete(self, account_id: str, region_name: str) -> None:
        backend = ecr_backends[account_id][region_name]
        backend.delete_repository(self.name, force=getattr(self, "standin_empty_on_delete", False))

    Repository.create_from_cloudformation_json = classmethod(create_with_flag)
    Repository.delete = delete


def _with_custom_resources() -> None:
    from moto.cloudformation.custom_model import CustomModel

    CustomModel.create_from_cloudformation_json = classmethod(_custom_create)
    CustomModel.delete = _custom_delete


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
    _with_delete_model_package()
    _with_ecr_empty_on_delete()
    if LAMBDA_CODE:
        _with_custom_resources()

    warnings.filterwarnings("error", message=STRICT)
    serve(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
