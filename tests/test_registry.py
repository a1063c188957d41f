"""The model registry on both backends: SQLite file and SageMaker Model Registry (moto)."""

from __future__ import annotations

import time

import pytest

from aws_helpers import TEST_REGION
from forecaster.errors import InvalidParameterError, NoApprovedModelError, RegistryError
from forecaster.registry import ApprovalStatus, ModelRegistry, open_registry
from forecaster.registry.sqlite import SQLiteRegistry

GROUP = "demand"
REGION = TEST_REGION  # the fake_aws fixture's


@pytest.fixture(params=["sqlite", "sagemaker"])
def registry(request, tmp_path, fake_aws) -> ModelRegistry:
    if request.param == "sqlite":
        yield open_registry(f"sqlite:///{tmp_path}/registry.db")
        return
    import moto

    with moto.mock_aws():
        yield open_registry(f"sagemaker://{REGION}")


def _register(registry: ModelRegistry, n: int, **kwargs):
    version = registry.register(GROUP, f"s3://bucket/models/{n}/model.tar.gz", image_uri="img:1", **kwargs)
    time.sleep(0.01)  # distinct creation times, as in real life
    return version


def test_versions_are_numbered_and_round_trip_metrics_baselines_lineage(registry):
    baselines = {
        "data_quality_statistics": "s3://b/dq/statistics.json",
        "data_quality_constraints": "s3://b/dq/constraints.json",
        "model_quality_statistics": "s3://b/eval/evaluation.json",
        "model_quality_constraints": "s3://b/mq/constraints.json",
        "explainability_report": "s3://b/explain/analysis.json",
    }
    lineage = {
        "training_data_hash": "sha256:abc",
        "code_version": "1a2b3c",
        "image_digest": "sha256:def",
        "parent_run": "exec-1",
    }
    first = _register(
        registry, 1, metrics={"wape": 0.31, "mae": 1.5}, baselines=baselines, lineage=lineage, description="first"
    )
    second = _register(registry, 2)
    assert (first.version, second.version) == (1, 2)
    assert first.status is ApprovalStatus.PENDING
    got = registry.get(GROUP, 1)
    assert got.model_data_url == "s3://bucket/models/1/model.tar.gz"
    assert got.image_uri == "img:1"
    assert got.metrics == {"wape": 0.31, "mae": 1.5}
    assert got.baselines == baselines
    assert got.lineage == lineage
    assert got.description == "first"
    assert registry.list_groups() == [GROUP]
    assert got.to_dict()["status"] == "PendingManualApproval"


def test_latest_approved_is_newest_created_among_approved(registry):
    for n in range(1, 6):
        _register(registry, n)
    registry.approve(GROUP, 1)
    registry.approve(GROUP, 3)
    registry.reject(GROUP, 2)
    # approving an older version afterwards must not make it "latest": latest = newest *created*
    registry.approve(GROUP, 2, note="re-approved later")
    # 4 pending, 5 rejected
    registry.reject(GROUP, 5)
    latest = registry.latest_approved(GROUP)
    assert latest.version == 3
    assert latest.model_data_url == "s3://bucket/models/3/model.tar.gz"
    listed = registry.list_versions(GROUP)
    assert [v.version for v in listed] == [5, 4, 3, 2, 1]  # newest created first
    assert [v.version for v in registry.list_versions(GROUP, "approved")] == [3, 2, 1]
    assert [v.status.value for v in listed] == ["Rejected", "PendingManualApproval", "Approved", "Approved", "Approved"]


def test_rollback_by_rejecting_the_newer_version(registry):
    for n in range(1, 4):
        _register(registry, n)
        registry.approve(GROUP, n)
    assert registry.latest_approved(GROUP).version == 3
    rejected = registry.reject(GROUP, 3, note="bad forecasts in store 17")
    assert rejected.status is ApprovalStatus.REJECTED
    assert rejected.approval_description == "bad forecasts in store 17"
    assert registry.latest_approved(GROUP).version == 2
    registry.reject(GROUP, 2)
    assert registry.latest_approved(GROUP).version == 1


def test_no_approved_version_is_a_clear_error(registry):
    _register(registry, 1)
    _register(registry, 2)
    registry.reject(GROUP, 2)
    with pytest.raises(NoApprovedModelError, match=r"has no approved version.*registry approve"):
        registry.latest_approved(GROUP)


def test_unknown_group_version_and_bad_input(registry):
    with pytest.raises(RegistryError, match="does not exist"):
        registry.latest_approved("nope")
    _register(registry, 1)
    with pytest.raises(RegistryError, match="no version 7"):
        registry.approve(GROUP, 7)
    with pytest.raises(InvalidParameterError, match="'status' parameter"):
        registry.set_status(GROUP, 1, "Maybe")
    with pytest.raises(InvalidParameterError, match="'baselines' parameter"):
        registry.register(GROUP, "s3://b/m.tar.gz", baselines={"drift": "s3://x"})
    with pytest.raises(InvalidParameterError, match="must be a number"):
        registry.register(GROUP, "s3://b/m.tar.gz", metrics={"wape": "low"})
    assert [v.version for v in registry.list_versions(GROUP)] == [1]  # nothing half-registered


def test_sagemaker_backend_asks_for_descending_order(fake_aws):
    """The resolver must pass SortOrder=Descending (the API default is Ascending)."""
    import moto

    with moto.mock_aws():
        registry = open_registry(f"sagemaker://{REGION}")
        for n in range(1, 4):
            _register(registry, n)
            registry.approve(GROUP, n)
        calls = []
        original = registry.client.list_model_packages

        def spy(**kwargs):
            calls.append(kwargs)
            return original(**kwargs)

        registry.client.list_model_packages = spy
        assert registry.latest_approved(GROUP).version == 3
    assert calls == [
        {
            "ModelPackageGroupName": GROUP,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "ModelApprovalStatus": "Approved",
            "MaxResults": 1,
        }
    ]


def test_sqlite_status_history_and_urls(tmp_path, monkeypatch):
    registry = SQLiteRegistry(tmp_path / "sub" / "r.db")
    registry.register(GROUP, "/models/1")
    registry.approve(GROUP, 1, note="ok")
    registry.reject(GROUP, 1, note="rollback")
    assert [(s, n) for s, _, n in registry.history(GROUP, 1)] == [
        ("PendingManualApproval", ""),
        ("Approved", "ok"),
        ("Rejected", "rollback"),
    ]
    monkeypatch.setenv("FORECASTER_REGISTRY", f"sqlite:///{tmp_path}/env.db")
    assert open_registry().path == tmp_path / "env.db"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_registry("sqlite:///~/.forecaster/registry.db").path == tmp_path / ".forecaster" / "registry.db"
    with pytest.raises(InvalidParameterError, match="sqlite:///PATH or sagemaker://"):
        open_registry("mlflow://x")


def test_cli_on_the_sqlite_registry(tmp_path, capsys, monkeypatch):
    import json

    from forecaster.cli.main import main

    url = ["--registry", f"sqlite:///{tmp_path}/cli.db"]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"wape": 0.3}))
    for n in (1, 2, 3):
        (tmp_path / "models" / str(n)).mkdir(parents=True)
        (tmp_path / "b" / str(n)).mkdir(parents=True)
        (tmp_path / "b" / str(n) / "c.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # relative paths are stored absolute: a version must not depend on the cwd
    for n in (1, 2, 3):
        args = [
            "registry",
            "register",
            *url,
            "--group",
            GROUP,
            "--model-data",
            f"models/{n}",
            "--metrics",
            str(metrics),
        ]
        assert (
            main([*args, "--lineage", f"code_version=c{n}", "--baseline", f"model_quality_constraints=b/{n}/c.json"])
            == 0
        )
    assert SQLiteRegistry(tmp_path / "cli.db").get(GROUP, 2).model_data_url == str(tmp_path / "models" / "2")
    for bad in (["--model-data", ""], ["--model-data", "models/9"], ["--model-data", "models/1", "--baseline", "x=y"]):
        assert main(["registry", "register", *url, "--group", GROUP, *bad]) == 2
        assert "names no existing file or directory" in capsys.readouterr().err
    assert main(["registry", "latest", *url, "--group", GROUP]) == NoApprovedModelError.exit_code
    assert "has no approved version" in capsys.readouterr().err
    for n in (1, 3):
        assert main(["registry", "approve", *url, "--group", GROUP, "--version", str(n)]) == 0
    assert main(["registry", "reject", *url, "--group", GROUP, "--version", "3", "--note", "rollback"]) == 0
    capsys.readouterr()
    assert main(["registry", "latest", *url, "--group", GROUP, "--json"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert (latest["version"], latest["metrics"], latest["lineage"]) == (1, {"wape": 0.3}, {"code_version": "c1"})
    assert main(["registry", "latest", *url, "--group", GROUP, "--parameters", "model-quality"]) == 0
    expected = {"ModelDataUrl": str(tmp_path / "models" / "1"), "ModelQualityBaselineUri": str(tmp_path / "b" / "1")}
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["registry", "list", *url, "--group", GROUP, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["status"]) for v in listed] == [
        (3, "Rejected"),
        (2, "PendingManualApproval"),
        (1, "Approved"),
    ]
    assert main(["registry", "list", *url]) == 0
    assert capsys.readouterr().out.split() == [GROUP]
    assert main(["registry", "approve", *url, "--group", GROUP, "--version", "9"]) == 5
    assert "no version 9" in capsys.readouterr().err


def test_a_damaged_or_mistyped_registry_is_a_clear_error_and_no_new_file(tmp_path, capsys):
    """A corrupt file was a raw sqlite3 traceback; `registry list` on a typo made an empty registry and exited 0."""
    from forecaster.cli.main import main

    (tmp_path / "bad.db").write_bytes(b"not a database " * 100)
    assert main(["registry", "list", "--registry", f"sqlite:///{tmp_path}/bad.db"]) == RegistryError.exit_code
    assert "bad.db cannot be used (file is not a database)" in capsys.readouterr().err
    assert main(["registry", "list", "--registry", f"sqlite:///{tmp_path}/typo.db"]) == RegistryError.exit_code
    assert "There is no registry at" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()


def test_an_aws_command_that_fails_says_what_to_check_instead_of_a_botocore_traceback(tmp_path, monkeypatch, capsys):
    """No credentials, or no AWS to reach (here a closed port on 127.0.0.1): both were botocore tracebacks."""
    from forecaster.cli.main import main
    from forecaster.errors import AwsError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9")  # nothing listens on the discard port
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # one an earlier test made holds its credentials
    assert main(["registry", "list", "--registry", "sagemaker://eu-west-1"]) == AwsError.exit_code
    assert "AWS: Unable to locate credentials (NoCredentialsError). Check the credentials" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    assert main(["registry", "list", "--registry", "sagemaker://eu-west-1"]) == AwsError.exit_code
    err = capsys.readouterr().err
    assert "AWS: Could not connect to the endpoint URL" in err and "Traceback" not in err
