"""The training image's preflight: a hidden entry script is restored, an unresolvable host fails fast."""

from __future__ import annotations

import json
import time

from forecaster.cli.main import main
from forecaster.container import preflight


def test_hidden_entry_script_is_restored_from_the_spare_copy(tmp_path):
    baked = tmp_path / "baked"
    baked.mkdir()
    (baked / "train.py").write_text("print('hi')\n")
    code = tmp_path / "opt_ml" / "code"
    assert preflight.restore_entry_script(code, "train.py", baked) == code / "train.py"
    assert (code / "train.py").read_text() == "print('hi')\n"
    (code / "train.py").write_text("mine\n")
    assert preflight.restore_entry_script(code, "train.py", baked) is None  # a user's own script is kept
    assert (code / "train.py").read_text() == "mine\n"


def test_unresolvable_current_host_writes_a_failure_within_seconds(tmp_path, monkeypatch):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    assert preflight.current_host(config / "resourceconfig.json") == "algo-1"
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setattr(preflight, "BAKED_CODE_DIR", tmp_path / "none")
    looked_up = []

    def fail(host, *args):
        looked_up.append(host)
        raise OSError("Name or service not known")

    monkeypatch.setattr(preflight.socket, "getaddrinfo", fail)
    monkeypatch.setattr(preflight, "RESOLVE_SECONDS", 1.0)
    start = time.monotonic()
    assert preflight.main() == 1
    assert time.monotonic() - start < 30  # the toolkit alone retries for 15 minutes
    assert set(looked_up) == {"algo-1"}
    assert "docker run --hostname algo-1" in (tmp_path / "output" / "failure").read_text()


def test_missing_extra_names_the_extra_instead_of_a_traceback(monkeypatch, capsys, tmp_path):
    import forecaster.checks.jobs as jobs

    def needs_jsonschema(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'jsonschema'", name="jsonschema")

    monkeypatch.setattr(jobs, "run_decide", needs_jsonschema)
    (tmp_path / "violations").mkdir()
    argv = ["decide-retrain", "--input", f"violations={tmp_path / 'violations'}", "--out", str(tmp_path / "out")]
    assert main(argv) == 7
    err = capsys.readouterr().err
    assert "needs the 'checks' extra" in err and "pip install 'forecaster[checks]'" in err
