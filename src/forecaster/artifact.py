"""The model artifact's descriptive files: ``feature_schema.json`` and ``metadata.json``."""

from __future__ import annotations

import atexit
import hashlib
import os
import platform
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster import __version__
from forecaster.contract import BOOSTER_KEYS, QUANTILES, booster_keys
from forecaster.errors import ModelArtifactError
from forecaster.io import read_json
from forecaster.spec import DatasetSpec

SCHEMA_VERSION = 1
SCHEMA_FILE = "feature_schema.json"
METADATA_FILE = "metadata.json"
MODEL_TARBALL = "model.tar.gz"
#: booster key -> its file in the model directory (``model_mean.txt``, ``model_q10.txt``, ...)
BOOSTER_FILES = {key: f"model_{key}.txt" for key in BOOSTER_KEYS}


def booster_files(point_bags: int = 1) -> dict[str, str]:
    """Booster key -> file of a model with ``point_bags`` point boosters (``model_mean_2.txt``, ...)."""
    return {key: f"model_{key}.txt" for key in booster_keys(point_bags)}


@dataclass(frozen=True)
class FeatureSchema:
    """What the server expects: ordered features with dtypes and vocabularies, horizon, quantiles, spec."""

    feature_names: tuple[str, ...]
    kinds: dict[str, str]
    categories: dict[str, list[str]]
    horizon: int
    spec: DatasetSpec
    scale_floor: float
    keys_as_features: bool = True
    quantiles: tuple[float, ...] = QUANTILES
    #: factor per quantile that makes its held-out coverage nominal (conformal calibration on the validation window)
    quantile_calibration: tuple[float, ...] = (1.0,) * len(QUANTILES)
    #: the point forecast (``mean`` column) = (1 - point_blend) x mean booster + point_blend x P50 booster, times
    #: point_scale; artifacts written before these fields existed read as the mean booster alone (0.0, 1.0)
    point_blend: float = 0.0
    point_scale: float = 1.0
    #: the point booster learns target / series level (like the quantile boosters); False in older artifacts
    point_relative: bool = False
    #: point boosters averaged into the point forecast (the same rows, another seed each); 1 in older artifacts
    point_bags: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def categorical_features(self) -> list[str]:
        return [name for name in self.feature_names if self.kinds[name] == "category"]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, name in enumerate(self.feature_names) if self.kinds[name] == "category"]

    def to_dict(self) -> dict[str, Any]:
        features = []
        for name in self.feature_names:
            entry: dict[str, Any] = {"name": name, "dtype": self.kinds[name]}
            if name in self.categories:
                entry["categories"] = self.categories[name]
            features.append(entry)
        return {
            "version": SCHEMA_VERSION,
            "features": features,
            "horizon": self.horizon,
            "quantiles": list(self.quantiles),
            "scale_floor": self.scale_floor,
            "quantile_calibration": list(self.quantile_calibration),
            "point_blend": self.point_blend,
            "point_scale": self.point_scale,
            "point_relative": self.point_relative,
            "point_bags": self.point_bags,
            "keys_as_features": self.keys_as_features,
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = SCHEMA_FILE) -> FeatureSchema:
        try:
            if data.get("version") != SCHEMA_VERSION:
                raise ModelArtifactError(
                    f"{source} has schema version {data.get('version')!r}; this forecaster reads version "
                    f"{SCHEMA_VERSION}. Retrain the model with this version."
                )
            features = data["features"]
            quantiles = tuple(float(q) for q in data["quantiles"])
            if quantiles != QUANTILES or len(data.get("quantile_calibration", QUANTILES)) != len(QUANTILES):
                raise ModelArtifactError(
                    f"{source} has quantiles {list(data['quantiles'])} (calibration "
                    f"{data.get('quantile_calibration')}); this forecaster serves {list(QUANTILES)}. Retrain or "
                    "restore the model."
                )
            return cls(
                feature_names=tuple(f["name"] for f in features),
                kinds={f["name"]: f["dtype"] for f in features},
                categories={f["name"]: _integer_labels(list(f["categories"])) for f in features if "categories" in f},
                horizon=int(data["horizon"]),
                quantiles=quantiles,
                scale_floor=float(data["scale_floor"]),
                quantile_calibration=tuple(
                    float(c) for c in data.get("quantile_calibration", (1.0,) * len(data["quantiles"]))
                ),
                keys_as_features=bool(data.get("keys_as_features", True)),
                point_blend=float(data.get("point_blend", 0.0)),
                point_scale=float(data.get("point_scale", 1.0)),
                point_relative=bool(data.get("point_relative", False)),
                point_bags=int(data.get("point_bags", 1)),
                spec=DatasetSpec.from_dict(data["spec"], source=f"spec in {source}"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelArtifactError(f"{source} is malformed ({error!r}); retrain or restore the model.") from error

    @classmethod
    def load(cls, model_dir: str | Path) -> FeatureSchema:
        path = model_files(model_dir) / SCHEMA_FILE
        return cls.from_dict(read_json(path), source=str(path))


def _integer_labels(labels: list[str]) -> list[str]:
    """Labels written for whole-number double keys (``"1.0"``, before keys were read as integers) as read now."""
    if labels and all(isinstance(x, str) and _WHOLE_FLOAT.fullmatch(x) for x in labels):
        return [x[:-2] for x in labels]  # same order, same codes: only the text the inputs are matched by
    return labels


_WHOLE_FLOAT = re.compile(r"-?\d+\.0")
#: the temporary folder a process unpacks a ``model.tar.gz`` into: ``forecaster-model-<pid>-<random>``
_UNPACKED_PREFIX = "forecaster-model-"


def model_files(model_dir: str | Path) -> Path:
    """Return the directory holding the model files of ``model_dir``.

    That is ``model_dir`` itself, or, when it holds a training job's ``model.tar.gz`` instead (a processing job's
    model input: SageMaker does not unpack it), a private temporary directory it is unpacked into once per
    process and removed when the process exits (a long-lived worker that scores every day leaves no copies behind).
    """
    model_dir = Path(model_dir)
    if (model_dir / SCHEMA_FILE).is_file():
        return model_dir
    tarball = model_dir / MODEL_TARBALL if model_dir.is_dir() else model_dir
    if tarball.is_file() and tarball.name.endswith(".tar.gz"):
        return _unpacked(str(tarball.resolve()), tarball.stat().st_mtime_ns)
    raise ModelArtifactError(
        f"{model_dir / SCHEMA_FILE} does not exist: {model_dir} is not a forecaster model directory (train one "
        f"with `forecaster train`, or put the training job's {MODEL_TARBALL} there)."
    )


#: this process's unpacked copies: tarball path -> (its mtime when unpacked, the copy)
_COPIES: dict[str, tuple[int, Path]] = {}


def _unpacked(tarball: str, mtime_ns: int) -> Path:
    """The copy of ``tarball`` as it is now; a copy of an older version of the same file is removed."""
    known = _COPIES.get(tarball)
    if known is not None and known[0] == mtime_ns and known[1].is_dir():
        return known[1]
    _remove_orphans()
    if known is not None:  # the file was replaced (a new model at the same path): its old copy goes
        shutil.rmtree(known[1], ignore_errors=True)
        del _COPIES[tarball]
    target = Path(tempfile.mkdtemp(prefix=f"{_UNPACKED_PREFIX}{os.getpid()}-"))
    atexit.register(_remove_if_owner, target, os.getpid())
    try:
        unpack_model(tarball, target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    _COPIES[tarball] = (mtime_ns, target)
    return target


def _remove_orphans() -> None:
    """Remove the unpacked copies of processes that are gone (a SIGKILL or an out-of-memory kill skips atexit)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_UNPACKED_PREFIX}*-*"):
        owner = folder.name[len(_UNPACKED_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_if_owner(target: Path, owner_pid: int) -> None:
    """Remove ``target`` at exit, in the process that made it only (a forked worker exits before its parent)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(target, ignore_errors=True)


def unpack_model(tarball: str | Path, target: str | Path) -> Path:
    """Unpack a ``model.tar.gz`` into the existing directory ``target``, as SageMaker fills ``/opt/ml/model``.

    Raises:
        ModelArtifactError: for an unreadable archive, one with a member that is not a plain file inside it,
            or one without a ``feature_schema.json``.
    """
    target = Path(target)
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            # filter= exists from Python 3.11.4 on (and is the default from 3.14); the images' 3.11.2 lacks it
            safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(target, members=_plain_members(archive, str(tarball)), **safety)
    except (tarfile.TarError, OSError) as error:
        raise ModelArtifactError(f"{tarball} is not a readable model archive: {error}") from error
    if not (target / SCHEMA_FILE).is_file():
        raise ModelArtifactError(f"{tarball} holds no {SCHEMA_FILE}: it is not a forecaster model archive.")
    return target


def _plain_members(archive: tarfile.TarFile, tarball: str) -> list[tarfile.TarInfo]:
    """The archive's members, refused unless each is a plain file or directory inside the archive.

    The images' Python (Debian's 3.11.2) predates ``extractall(filter="data")`` (3.11.4), which would do this:
    the check is made here, on every Python, and the members get plain permissions.
    """
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in parts:
            raise ModelArtifactError(
                f"{tarball} holds {member.name!r}, which is not a plain file inside the archive: refusing to "
                f"unpack it. Use the {MODEL_TARBALL} the training job wrote."
            )
        member.mode = 0o755 if member.isdir() else 0o644
        member.uid = member.gid = 0
        member.uname = member.gname = ""
    return members


def pack_model(model_dir: str | Path, tarball: str | Path) -> Path:
    """Write ``model_dir``'s files into ``tarball`` the way SageMaker packs ``/opt/ml/model``."""
    from forecaster.io import atomic_path

    with atomic_path(tarball) as tmp, tarfile.open(tmp, "w:gz") as archive:
        for file in sorted(Path(model_files(model_dir)).iterdir()):
            archive.add(file, arcname=file.name)
    return Path(tarball)


def frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's content (column names, values, order): the training-data fingerprint."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the model."""
    versions = {"python": platform.python_version(), "forecaster": __version__}
    for name in ("lightgbm", "numpy", "pandas"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[name] = "unknown"
    return versions
