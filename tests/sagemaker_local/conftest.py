"""SDK local mode: the SageMaker Python SDK v3 runs the project's images in Docker the way SageMaker runs them.

Everything here is the test harness; nothing of it is in the product. Fixtures (reusable by every test under
tests/sagemaker_local/):

- ``sdk_env``: fake credentials, a region, telemetry off (``SAGEMAKER_USER_CONFIG_OVERRIDE``), role validation
  off, and moto's in-process AWS (S3 and the SageMaker registry API; no job runs there) with bucket
  :data:`BUCKET`. Docker and docker-compose must be there: without them the tests skip on a laptop and FAIL under
  ``CI=true`` (as tests/test_docker.py).
- ``images``: the training/processing and the inference image (built once per session, tests/conftest.py).
- ``local_session``: a ``LocalSession`` (jobs and endpoints in local containers).
- ``pipeline_session``: a :class:`LocalPipelineSession` with the shims below.
- ``sagemaker_client``: moto's SageMaker client (model registry).

Shims, each covering one thing SDK 3.27 local mode lacks or does differently from SageMaker:

1. ``create_pipeline``/``start_pipeline_execution``: ``Pipeline.create()``/``start()`` call them on the session's
   ``LocalSagemakerClient``, which no longer has them in v3 (they moved to
   ``sagemaker.mlops.local.LocalPipelineSession``): :class:`LocalPipelineSession` puts its own on the client.
2. ``_user_agent_creator``: ``ModelBuilder.build()``/``.register()`` (the ``CreateModel`` and ``RegisterModel``
   steps) wrap ``sagemaker_client._user_agent_creator.to_string``; the local client has none, so it gets a real
   botocore SageMaker client's.
3. ``RegisterModel``: local mode refuses the step type. :func:`execute_pipeline` takes it out of its condition's
   branch before the run and, when the condition chose that branch, sends the step's own ``CreateModelPackage``
   request (every pipeline variable evaluated by the SDK's local executor) to moto's SageMaker.
4. Transform output location: a local transform job uploads to ``S3OutputPath/<job name>/``, SageMaker to
   ``S3OutputPath/`` (``transform_output_where_sagemaker_writes_it``, applied by ``sdk_env``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aws_helpers import use_fake_aws
from docker_helpers import sh

from .local_mode import (
    BUCKET,
    ENVIRONMENT,
    LOCAL_MODE_CONTAINER,
    REGION,
    TELEMETRY_OPT_OUT,
    containers,
    image_id,
    local_config,
    pipeline_session_class,
    require_compose,
    transform_output_where_sagemaker_writes_it,
)


@pytest.fixture(scope="package")
def images(train_image: str, infer_image: str) -> Iterator[tuple[str, str]]:
    """(training/processing image, inference image); exited local-mode containers they left are removed after."""
    require_compose()
    before = set(containers())
    yield train_image, infer_image
    ours = {train_image, infer_image, image_id(train_image), image_id(infer_image)}
    for container, (name, image) in containers().items():
        if container not in before and LOCAL_MODE_CONTAINER.match(name) and image in ours:
            sh("docker", "rm", "-f", container, check=False)


@pytest.fixture(scope="package")
def sdk_env(tmp_path_factory) -> Iterator[None]:
    """Fake AWS for the SDK: environment, telemetry opt-out, and moto (S3 bucket :data:`BUCKET`) in-process."""
    config = tmp_path_factory.mktemp("sagemaker-config") / "config.yaml"
    config.write_text(TELEMETRY_OPT_OUT)
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws(patch, REGION)
        for name, value in {**ENVIRONMENT, "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config)}.items():
            patch.setenv(name, value)
        import boto3
        import moto

        transform_output_where_sagemaker_writes_it(patch)
        with moto.mock_aws():
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
            yield


@pytest.fixture(scope="package")
def sagemaker_client(sdk_env) -> Any:
    import boto3

    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture(scope="package")
def local_session(sdk_env, tmp_path_factory) -> Any:
    import boto3
    from sagemaker.core.local import LocalSession

    session = LocalSession(boto_session=boto3.Session(region_name=REGION), default_bucket=BUCKET)
    return local_config(session, tmp_path_factory.mktemp("local-mode"))


@pytest.fixture(scope="package")
def pipeline_session(sdk_env, tmp_path_factory) -> Any:
    import boto3

    session = pipeline_session_class()(boto_session=boto3.Session(region_name=REGION), default_bucket=BUCKET)
    return local_config(session, tmp_path_factory.mktemp("local-pipelines"))
