"""Seed code of a forecaster project: the model-build and model-deploy repositories.

The seed files live next to this module (``seed/build``, ``seed/deploy``) with two tokens that name the project
(:data:`TOKENS`). Two consumers render them with the same values:

- ``forecaster project init`` writes each repository as a directory with a git repository of one commit whose
  author, committer, dates and message are fixed, so the same inputs give byte-identical repositories (the
  same commit id);
- ``forecaster project bundle`` writes the raw files and a ``manifest.json`` (tokens, repository suffixes) into
  a zip for the project template's seeding Lambda, which renders them from its CloudFormation properties.

Seed file names starting with ``dot-`` are written as ``.<rest>`` (package data keeps no dot-files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from forecaster import __version__
from forecaster.errors import ForecasterError, InvalidParameterError
from forecaster.io import atomic_path

#: repository key -> name suffix: the build repository of project NAME is NAME-model-build
REPOSITORIES = {"build": "model-build", "deploy": "model-deploy"}
#: token in the seed files -> the seeding custom resource's property that fills it
TOKENS = {"{{project_name}}": "ProjectName", "{{bitbucket_workspace}}": "BitbucketWorkspace"}
#: a project name fits every resource named after it (SageMaker project, ECR, S3 prefix, Bitbucket slug)
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
#: filled when the files are read: the seed repositories pin the forecaster release that wrote them
VERSION_TOKEN = "{{forecaster_version}}"
DEFAULT_WORKSPACE = "your-workspace"
_DOT_PREFIX = "dot-"
_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "forecaster project template",
    "GIT_AUTHOR_EMAIL": "forecaster@users.noreply.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "forecaster project template",
    "GIT_COMMITTER_EMAIL": "forecaster@users.noreply.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
_ZIP_TIME = (2025, 1, 1, 0, 0, 0)


def check_name(name: str) -> str:
    """Return ``name`` if it can name a project.

    Raises:
        InvalidParameterError: otherwise.
    """
    if not NAME_PATTERN.match(name or ""):
        raise InvalidParameterError(
            "The project name must be 3-32 characters of lower-case letters, digits and '-', start with a letter "
            f"and end with a letter or digit (it names ECR repositories, S3 prefixes and pipelines). Got {name!r}."
        )
    return name


def seed_files(repository: str) -> dict[str, str]:
    """Return the seed files of ``repository`` (``build`` or ``deploy``): relative path -> text, sorted.

    The project tokens (:data:`TOKENS`) are left in; the forecaster version (:data:`VERSION_TOKEN`) is filled.
    """
    root = resources.files("forecaster.project") / "seed" / repository
    files: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith(".") or child.name == "__pycache__" or child.name.endswith(".pyc"):
                continue  # caches of tools run in the source tree; seed dot-files are named dot-*
            name = child.name
            if name.startswith(_DOT_PREFIX):
                name = "." + name[len(_DOT_PREFIX) :]
            if child.is_dir():
                walk(child, f"{prefix}{name}/")
            else:
                files[f"{prefix}{name}"] = child.read_text(encoding="utf-8")

    walk(root, "")
    return {path: text.replace(VERSION_TOKEN, __version__) for path, text in sorted(files.items())}


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every token of :data:`TOKENS` in ``text`` with ``values[<its property>]``."""
    for token, key in TOKENS.items():
        text = text.replace(token, values[key])
    return text


def _git(args: list[str], cwd: Path) -> str:
    env = {**os.environ, **_COMMIT_ENV}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ForecasterError("forecaster project init needs git on PATH.") from None
    except subprocess.CalledProcessError as error:
        raise ForecasterError(f"git {' '.join(args)} failed: {error.stderr.strip()}") from None
    return done.stdout.strip()


def _write_repository(files: Mapping[str, str], target: Path, message: str) -> str:
    """Write ``files`` into a fresh git repository at ``target`` with one commit; return the commit id."""
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for relative, text in files.items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o644)
        _git(["init", "-q", "--template=", "-b", "main"], work)
        _git(["add", "-A"], work)
        _git(["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message], work)
        commit = _git(["rev-parse", "HEAD"], work)
        work.rename(target)
        return commit
    finally:
        shutil.rmtree(work, ignore_errors=True)


def init(name: str, out: str | Path, workspace: str = DEFAULT_WORKSPACE) -> dict[str, tuple[Path, str]]:
    """Write the build and deploy repositories of project ``name`` under ``out``.

    Returns:
        repository key -> (its directory, its commit id).

    Raises:
        InvalidParameterError: for a bad name, or when a repository directory exists already (nothing is
            written then).
    """
    values = {"ProjectName": check_name(name), "BitbucketWorkspace": workspace}
    out = Path(out)
    targets = {key: out / f"{name}-{suffix}" for key, suffix in REPOSITORIES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise InvalidParameterError(f"{', '.join(existing)} exists already: remove it or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[Path, str]] = {}
    for key, target in targets.items():
        files = {path: render(text, values) for path, text in seed_files(key).items()}
        written[key] = (target, _write_repository(files, target, f"Seed {name}-{REPOSITORIES[key]}"))
    return written


def bundle(out: str | Path) -> Path:
    """Write the seed bundle of the seeding Lambda: raw seed files per repository and ``manifest.json``."""
    manifest = {"tokens": TOKENS, "repositories": REPOSITORIES}
    entries = {"manifest.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n"}
    for key in REPOSITORIES:
        entries |= {f"{key}/{path}": text for path, text in seed_files(key).items()}
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in entries.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return Path(out)
