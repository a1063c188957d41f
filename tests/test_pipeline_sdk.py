"""The SDK environment helpers: offline AWS, real-AWS environment, config validation, missing extra."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forecaster.errors import ForecasterError, InvalidParameterError
from forecaster.pipelines import sdk


def test_offline_aws_masks_and_restores_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    with sdk.offline_aws("eu-central-1", "my-bucket") as region:
        import boto3

        assert region == "eu-central-1"
        assert os.environ["AWS_ACCESS_KEY_ID"] != "AKIAREALKEY" and "AWS_PROFILE" not in os.environ
        assert os.environ["SAGEMAKER_VALIDATE_ROLE"] == "false"
        assert "TelemetryOptOut: true" in Path(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"]).read_text()
        buckets = boto3.client("s3", region_name=region).list_buckets()["Buckets"]
        assert [b["Name"] for b in buckets] == ["my-bucket"]  # moto, not a real account
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAREALKEY" and os.environ["AWS_PROFILE"] == "prod"
    assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ


def test_sdk_environment_keeps_credentials_and_user_config(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", "/home/me/sagemaker.yaml")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    with sdk.sdk_environment(None) as region:
        assert region == "us-west-2"
        assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAREALKEY"
        assert os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] == "/home/me/sagemaker.yaml"
        assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ
    with sdk.sdk_environment("eu-west-1", validate_role=False):
        assert os.environ["SAGEMAKER_VALIDATE_ROLE"] == "false"
    assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(InvalidParameterError, match="No AWS region"), sdk.sdk_environment(None):
        pass


def test_config_is_still_validated_once(monkeypatch):
    import jsonschema
    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"]
    with sdk._config_validated_once():
        SageMakerConfig().validate_sagemaker_config({"SchemaVersion": "1.0"})
        SageMakerConfig().validate_sagemaker_config({"SchemaVersion": "1.0"})
        with pytest.raises(jsonschema.ValidationError):
            SageMakerConfig().validate_sagemaker_config({"Bogus": 1})
    assert SageMakerConfig.__dict__["validate_sagemaker_config"] is original


def test_missing_extra_says_how_to_install():
    with pytest.raises(ForecasterError, match=r"pip install 'forecaster\[pipelines\]'"):
        sdk.require("boto3", "surely_not_installed_module")
