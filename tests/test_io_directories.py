"""``forecaster.io.atomic_directory``: all-or-nothing output directories that may be mount points.

SageMaker (and the SDK's local mode) bind-mounts ``/opt/ml/model`` and every ``/opt/ml/processing/output/<name>``:
those directories can be written into but not removed or renamed (``EBUSY``), and a rename from the container's
own file system into them crosses devices (``EXDEV``). The fake below makes the kernel's answers for a set of
"mounted" directories; tests/test_docker.py proves the same with real bind mounts inside the image.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from forecaster.errors import DataValidationError
from forecaster.io import atomic_directory, read_table, write_json
from forecaster.pipelines.split import write_split
from forecaster.spec import DatasetSpec
from forecaster.synth import generate

SPLITS = ("train", "history", "future", "truth")  # the outputs of `forecaster split`


@pytest.fixture
def mounts(monkeypatch) -> set[Path]:
    """Directories that behave like bind mounts: no rmdir, no rename of them, no rename across their boundary."""
    mounted: set[Path] = set()
    real_rmdir, real_rename, real_replace = os.rmdir, os.rename, os.replace

    def device(path: os.PathLike[str] | str) -> Path | None:
        path = Path(path).absolute()
        return next((m for m in mounted if path == m or m in path.parents), None)

    def busy(path) -> None:
        if Path(path).absolute() in mounted:
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))

    def rmdir(path, *args, **kwargs):
        busy(path)
        return real_rmdir(path, *args, **kwargs)

    def renamer(real):
        def rename(src, dst, *args, **kwargs):
            busy(src)
            busy(dst)
            if device(src) != device(Path(dst).parent):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
            return real(src, dst, *args, **kwargs)

        return rename

    monkeypatch.setattr(os, "rmdir", rmdir)
    monkeypatch.setattr(os, "rename", renamer(real_rename))
    monkeypatch.setattr(os, "replace", renamer(real_replace))
    return mounted


def test_split_writes_into_mounted_output_directories(tmp_path, mounts):
    # a processing job's outputs: /opt/ml/processing/output/{train,history,future,truth}, each a mount
    data = tmp_path / "sales.csv"
    generate(stores=2, items=2, days=30, seed=0).to_csv(data, index=False)
    out = tmp_path / "output"
    for name in SPLITS:
        (out / name).mkdir(parents=True)  # empty mount points may be written into
        mounts.add(out / name)
    write_split(data, DatasetSpec.preset("default"), 5, out)
    (out / "train" / "stale.csv").write_text("left by an earlier run\n")  # inside what that run wrote
    written = write_split(data, DatasetSpec.preset("default"), 5, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)  # no staging directory left behind
    for name in SPLITS:
        bundled = ["spec.json"] if name == "train" else []  # train --data <out>/train reads the spec it was split by
        assert sorted(p.name for p in (out / name).iterdir()) == sorted([f"{name}.parquet", *bundled])
        assert written[name] == out / name / f"{name}.parquet"
    assert len(read_table(out / "truth")) == 2 * 2 * 5


def test_a_mounted_target_is_filled_not_replaced(tmp_path, mounts):
    model = tmp_path / "model"  # /opt/ml/model of a training job
    with atomic_directory(model) as stage:  # an earlier run's output
        (stage / "old").mkdir()
        (stage / "old" / "x.txt").write_text("x")
        (stage / "keep.json").write_text("{}")
    mounts.update({model, model / "old"})
    with atomic_directory(model) as stage:
        write_json({"v": 2}, stage / "keep.json")
        (stage / "sub").mkdir()
        write_json({}, stage / "sub" / "a.json")
    assert model.is_dir() and (model / "old").is_dir()  # a mount point cannot go: it stays, emptied
    assert not list((model / "old").iterdir())
    assert sorted(p.name for p in model.iterdir()) == ["keep.json", "old", "sub"]
    assert (model / "keep.json").read_text().strip() == '{\n  "v": 2\n}'


def test_a_failing_block_leaves_the_target_unchanged(tmp_path, mounts):
    out = tmp_path / "out"
    with atomic_directory(out) as stage:
        (stage / "before.txt").write_text("before")
    mounts.add(out)
    with pytest.raises(RuntimeError), atomic_directory(out) as stage:
        (stage / "half.txt").write_text("half")
        raise RuntimeError("the step failed")
    assert [p.name for p in out.iterdir()] == ["before.txt"]
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), atomic_directory(fresh) as stage:
        (stage / "half.txt").write_text("half")
        raise RuntimeError("the step failed")
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".out.")) == ["out"]


def test_files_put_there_by_anything_else_are_never_deleted(tmp_path):
    """``--model-dir models`` on a folder of other models, ``--out ~/Documents``: refused before any work, named."""
    models = tmp_path / "models"
    (models / "model-2026-11").mkdir(parents=True)
    (models / "model-2026-11" / "model_mean.txt").write_text("tree")
    (models / "notes.txt").write_text("notes")
    (models / "mount").mkdir()  # empty: a mount point, nothing to lose
    with pytest.raises(DataValidationError) as caught, atomic_directory(models) as stage:
        pytest.fail("the block ran although the output directory holds other files")
    message = str(caught.value)
    assert "did not write: model-2026-11, notes.txt." in message and f"{models / 'run-1'}" in message
    assert (models / "model-2026-11" / "model_mean.txt").read_text() == "tree"
    assert (models / "notes.txt").read_text() == "notes"
    with atomic_directory(models / "mount") as stage:
        (stage / "a.txt").write_text("a")
    # what an earlier run wrote is replaced (stale names removed); what was added to it since is refused
    with atomic_directory(models / "mount") as stage:
        (stage / "b.txt").write_text("b")
    assert [p.name for p in (models / "mount").iterdir()] == ["b.txt"]
    (models / "mount" / "mine.txt").write_text("mine")
    with pytest.raises(DataValidationError, match=r"did not write: mine\.txt"), atomic_directory(models / "mount"):
        pass
    assert sorted(p.name for p in (models / "mount").iterdir()) == ["b.txt", "mine.txt"]


def test_a_new_target_is_the_stage_renamed_and_readable(tmp_path):
    with atomic_directory(tmp_path / "a" / "b") as stage:
        (stage / "f.txt").write_text("f")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".b.forecaster-output.json", "b"]  # the record
    assert (tmp_path / "a" / "b" / "f.txt").read_text() == "f"
    (tmp_path / "file").write_text("")
    with pytest.raises(DataValidationError, match="not a directory"), atomic_directory(tmp_path / "file"):
        pass


def test_json_files_are_strict_json_nan_as_null_and_an_infinity_refused(tmp_path):
    """Bare NaN / Infinity (json.dumps' default) break jq, JavaScript and every strict reader."""
    path = write_json(
        {"metrics": {"wape": 0.25, "wape_campaign": float("nan")}, "n": [np.float32("nan")]}, tmp_path / "a.json"
    )
    assert json.loads(path.read_text()) == {"metrics": {"wape": 0.25, "wape_campaign": None}, "n": [None]}
    with pytest.raises(DataValidationError, match=r"b\.json: features\['units'\]\.stats\[1\] is -inf, which JSON"):
        write_json({"features": [{"name": "units", "stats": [1.0, -np.inf]}]}, tmp_path / "b.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # nothing written, no temporary left


def test_writing_a_file_onto_a_folder_names_the_folder(tmp_path):
    """`pipeline definition --out <folder>` was an IsADirectoryError traceback naming a temporary file."""
    from forecaster.errors import InvalidParameterError

    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidParameterError, match=r"Cannot write the file .*out: it is a folder"):
        write_json({"a": 1}, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_train_and_the_checks_refuse_a_folder_of_other_files_before_any_work(tmp_path, capsys, monkeypatch):
    from forecaster import training
    from forecaster.cli.main import main

    data = tmp_path / "sales.csv"
    generate(stores=2, items=2, days=60, seed=0).to_csv(data, index=False)
    models = tmp_path / "models"
    (models / "model-2026-11").mkdir(parents=True)
    (models / "model-2026-11" / "model_mean.txt").write_text("tree")
    (models / "notes.txt").write_text("notes")
    monkeypatch.setattr(training, "_validated_sources", lambda *a, **k: pytest.fail("trained before the refusal"))
    assert main(["train", "--data", str(data), "--model-dir", str(models)]) != 0
    assert "holds entries forecaster did not write: model-2026-11, notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in models.iterdir()) == ["model-2026-11", "notes.txt"]
    report = tmp_path / "report"
    report.mkdir()
    (report / "draft.md").write_text("mine")
    truth = tmp_path / "truth.csv"
    generate(stores=1, items=1, days=5, seed=0).to_csv(truth, index=False)
    code = main(["evaluate", "--input", f"predictions={truth}", "--input", f"truth={truth}", "--out", str(report)])
    assert code != 0 and "did not write: draft.md" in capsys.readouterr().err
    assert (report / "draft.md").read_text() == "mine"


def test_an_output_below_a_file_or_in_a_read_only_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    """``train --model-dir afile/m`` trained for minutes, then said "File exists: afile"."""
    from forecaster.io import claim_output_directory

    (tmp_path / "afile").write_text("")
    with pytest.raises(DataValidationError, match="afile is a file, not a folder"):
        claim_output_directory(tmp_path / "afile" / "m")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # as on a read-only mount
    with pytest.raises(DataValidationError, match="is not writable"):
        claim_output_directory(tmp_path / "new" / "m")
