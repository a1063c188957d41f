"""The local pipeline runner: ``forecaster pipeline run <pipeline> --local --workdir DIR [--param K=V ...]``.

It walks the same step table as the SageMaker definitions (:mod:`forecaster.pipelines.catalog`) on this machine,
through the same code paths as the containers (see :mod:`forecaster.pipelines.local_steps`). Layout of a work
directory, which mirrors a processing job's ``/opt/ml/processing/{input,output}``:

    <workdir>/run.json                      the run record: parameters, and per step status, inputs, outputs,
                                            timing, the failure reason and a cache key
    <workdir>/<Step>/output/<name>/...      the step's outputs
    <workdir>/<Step>/input/<name>/...       inputs that are files, staged into a folder (hard links), as a
                                            processing job mounts an S3 object in a folder
    <workdir>/<Step>/log.txt                what the step printed
    <workdir>/registry.db                   the default model registry (``--registry`` overrides)

Re-running with the same work directory resumes: a step whose cache key (its command, settings, the
parameters it uses, the content of its parameter inputs and the keys of the steps it reads from) matches a
step that succeeded before, and whose outputs are still there, is reused instead of run again. A failing step
stops the run with its reason (recorded in ``run.json``); the next run starts again from that step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forecaster import __version__
from forecaster.contract import RUN_FILE
from forecaster.errors import ForecasterError, InvalidParameterError, PipelineStepError
from forecaster.io import read_json, write_json
from forecaster.pipelines.catalog import PIPELINES
from forecaster.pipelines.local_params import resolve_parameters
from forecaster.pipelines.local_steps import (
    EXECUTORS,
    CommandRunner,
    StepContext,
    run_forecaster_program,
    sigterm_interrupts,
)
from forecaster.pipelines.table import PipelineSpec, StepSpec, absent_inputs
from forecaster.registry import registry_url

#: parameters an executor reads although the step's table entry does not name them (as the SDK builder does)
IMPLICIT_PARAMS = {"transform": ("TransformMaxPayloadInMB", "TransformMaxConcurrent")}
_PARAM_TOKEN = re.compile(r"\{param:(\w+)\}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def content_digest(path: Path) -> str:
    """SHA-256 of a file, or of every non-hidden file under a directory (relative names and contents)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(path) if file != path else Path(file.name)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(str(relative).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _references(spec: StepSpec, params: set[str], steps: set[str]) -> tuple[set[str], set[str]]:
    """(parameters, steps) a step refers to: placeholders, ``param:``/``step:`` references, settings values."""
    used_params: set[str] = set()
    used_steps: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            used_params.update(_PARAM_TOKEN.findall(value))
            kind, _, target = value.partition(":")
            if kind == "param":
                used_params.add(target)
            elif kind == "step":
                used_steps.add(target.split("/")[0])
            if value in params:
                used_params.add(value)
            if value in steps:
                used_steps.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk([spec.args, spec.inputs, spec.instance, spec.settings, IMPLICIT_PARAMS.get(spec.kind, ())])
    return used_params, used_steps - {spec.name}


@contextlib.contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    """Hold ``<workdir>/.run.lock`` so two runs never write the same work directory at once."""
    with open(workdir / ".run.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ForecasterError(
                f"Another run is using work directory {workdir}. Wait for it to finish, or pass another --workdir."
            ) from None
        yield


class LocalRun:
    """One execution of a pipeline in a work directory (see the module docstring).

    Args:
        pipeline: ``build``, ``inference`` or ``model-quality``.
        workdir: the work directory (created if missing).
        params: parameter values (``{name: value}``; unknown names are rejected), the rest take their defaults.
        registry: model registry URL (default: ``$FORECASTER_REGISTRY``, else ``<workdir>/registry.db``).
        group: model package group the inference and model-quality pipelines take the latest approved model
            from (default: the build pipeline's ``ModelPackageGroupName`` default).
        progress: show a progress bar and one line per step.
        command_runner: runs a processing step's ``forecaster`` command line (the CLI hands its own, in-process
            one); default: the ``forecaster`` program in a subprocess.
    """

    def __init__(
        self,
        pipeline: str,
        workdir: str | os.PathLike[str],
        params: Mapping[str, Any] | None = None,
        *,
        registry: str | None = None,
        group: str | None = None,
        progress: bool = True,
        command_runner: CommandRunner = run_forecaster_program,
    ) -> None:
        if pipeline not in PIPELINES:
            raise InvalidParameterError(
                f"The 'pipeline' parameter must be one of {sorted(PIPELINES)}. Got {pipeline!r} instead."
            )
        self.key = pipeline
        self.spec: PipelineSpec = PIPELINES[pipeline]
        self.workdir = Path(workdir).resolve()
        self.registry_url = registry_url(registry, self.workdir)
        self.params, self.notes = resolve_parameters(
            pipeline, self.spec, params or {}, registry_url=self.registry_url, group=group
        )
        self.progress = progress
        self.command_runner = command_runner
        self.run_id = f"local-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self.keys: dict[str, str] = {}
        self._digests: dict[str, str] = {}
        self.record: dict[str, Any] = {}

    # -- locations ------------------------------------------------------------------------------------------
    def output_path(self, step: str, output: str) -> Path:
        """Local path of output ``output`` of ``step`` (a model step stands for its model data)."""
        spec = self.spec.step(step)
        if spec.kind == "model":
            return self._source(spec.inputs["model"])
        return self.workdir / step / "output" / output

    def _source(self, ref: str) -> Path:
        kind, _, target = ref.partition(":")
        if kind == "param":
            return Path(self.params[target])
        step, _, output = target.partition("/")
        return self.output_path(step, output)

    def _inputs(self, spec: StepSpec, folder: Path) -> dict[str, Path]:
        """Input name -> local path; an input that is a file is staged into ``<step>/input/<name>/``."""
        inputs = {}
        absent = absent_inputs(spec, self.params.__getitem__)
        for name, ref in spec.inputs.items():
            if name in absent:  # an optional input that is not given (its parameter is empty)
                continue
            path = self._source(ref)
            if path.is_file():
                staged = folder / "input" / name / path.name
                staged.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, staged)
                except OSError:
                    shutil.copy2(path, staged)
                path = staged.parent
            inputs[name] = path
        return inputs

    # -- cache keys -----------------------------------------------------------------------------------------
    def cache_key(self, spec: StepSpec) -> str:
        """What a step's result depends on, hashed (steps are walked in order, so upstream keys exist)."""
        used_params, used_steps = _references(spec, set(self.params), {s.name for s in self.spec.steps})
        inputs = {}
        for name in sorted(used_params):  # an input, or a file a parameter names (a Spec JSON): by its content
            value = self.params[name]
            named_file = isinstance(value, str) and value != "" and Path(value).is_file()
            if (f"param:{name}" in spec.inputs.values() and value != "") or named_file:
                if name not in self._digests:
                    self._digests[name] = content_digest(Path(self.params[name]))
                inputs[name] = self._digests[name]
        document = {
            "forecaster": __version__,
            "step": [spec.name, spec.kind, spec.command, spec.args, spec.inputs, spec.outputs, spec.settings],
            "params": {name: self.params[name] for name in sorted(used_params)},
            "param_inputs": inputs,
            "upstream": {name: self.keys.get(name, "") for name in sorted(used_steps)},
            "registry": self.registry_url if spec.kind == "register" else "",
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()

    def _reusable(self, spec: StepSpec, old: dict[str, Any] | None, key: str) -> bool:
        if not old or old.get("status") != "Succeeded" or old.get("cache_key") != key:
            return False
        if spec.kind == "register":  # the registered version must still be there (a registry file can be removed)
            from forecaster.registry import open_registry

            package = old.get("model_package") or {}
            try:
                open_registry(self.registry_url).get(package.get("group", ""), int(package.get("version", 0)))
            except ForecasterError:
                return False
        return all(self.output_path(spec.name, name).exists() for name in spec.outputs)

    # -- running --------------------------------------------------------------------------------------------
    def _execute(self, spec: StepSpec, key: str) -> dict[str, Any]:
        folder = self.workdir / spec.name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        record: dict[str, Any] = {"kind": spec.kind, "status": "Executing", "cache_key": key, "started_at": _now()}
        self.record["steps"][spec.name] = record
        started = time.perf_counter()
        try:
            inputs = self._inputs(spec, folder)
            record["inputs"] = {name: str(path) for name, path in inputs.items()}
            context = StepContext(
                pipeline=self.spec,
                spec=spec,
                folder=folder,
                inputs=inputs,
                params=self.params,
                output_of=self.output_path,
                registry_url=self.registry_url,
                run_id=self.run_id,
                run_command=self.command_runner,
            )
            record.update(EXECUTORS[spec.kind](context))
            record["outputs"] = {name: str(self.output_path(spec.name, name)) for name in spec.outputs}
            record["status"] = "Succeeded"
        except PipelineStepError as error:
            record.update(status="Failed", reason=error.reason)
        except KeyboardInterrupt:
            record.update(status="Stopped", reason="interrupted (Ctrl-C or SIGTERM)")
            raise
        except Exception as error:  # an unexpected failure: record it, never leave the record half-written
            record.update(status="Failed", reason=f"{type(error).__name__}: {error}")
        finally:
            record["seconds"] = round(time.perf_counter() - started, 3)
            record["finished_at"] = _now()
            self._save()
        return record

    def _save(self) -> None:
        write_json(self.record, self.workdir / RUN_FILE)

    def _previous(self) -> dict[str, Any]:
        path = self.workdir / RUN_FILE
        if not path.is_file():
            return {}
        try:
            previous = read_json(path)
        except ForecasterError:
            return {}
        if previous.get("pipeline") not in (None, self.key):
            raise InvalidParameterError(
                f"Work directory {self.workdir} holds a run of the {previous['pipeline']} pipeline. Use another "
                f"--workdir for the {self.key} pipeline (one work directory per pipeline)."
            )
        return previous

    def run(self) -> dict[str, Any]:
        """Run the pipeline; return the run record (also in ``<workdir>/run.json``).

        Raises:
            PipelineStepError: when a step fails; the message names the step and the reason.
        """
        from tqdm.auto import tqdm

        self.workdir.mkdir(parents=True, exist_ok=True)
        with _locked(self.workdir):
            previous = self._previous()
            history = [*previous.get("previous_runs", []), *([_summary(previous)] if previous else [])][-20:]
            self.record = {
                "pipeline": self.key,
                "name": self.spec.name,
                "run_id": self.run_id,
                "status": "Executing",
                "started_at": _now(),
                "workdir": str(self.workdir),
                "registry": self.registry_url,
                "parameters": self.params,
                "notes": self.notes,
                "steps": {},
                "previous_runs": history,
            }
            old_steps = previous.get("steps", {})
            branches = {n for s in self.spec.steps if s.kind == "condition" for n in _branch_steps(s)}
            selected: set[str] = set()
            started = time.perf_counter()
            bar = tqdm(total=len(self.spec.steps), desc=self.key, unit="step", disable=not self.progress)
            try:
                for spec in self.spec.steps:
                    bar.set_postfix_str(spec.name)
                    if spec.name in branches and spec.name not in selected:
                        self.record["steps"][spec.name] = {"kind": spec.kind, "status": "NotExecuted"}
                        bar.update()
                        continue
                    key = self.keys[spec.name] = self.cache_key(spec)
                    old = old_steps.get(spec.name)
                    if self._reusable(spec, old, key):
                        outputs = {name: str(self.output_path(spec.name, name)) for name in spec.outputs}
                        record = {**old, "outputs": outputs, "cache_hit": True}
                        self.record["steps"][spec.name] = record
                        self._save()
                    else:
                        record = self._execute(spec, key)
                    bar.update()
                    if self.progress:
                        bar.write(_line(spec.name, record))
                    if record["status"] != "Succeeded":
                        self._finish("Failed", started, f"{spec.name}: {record.get('reason', '')}")
                        reused = sum(1 for r in self.record["steps"].values() if r.get("cache_hit"))
                        raise PipelineStepError(
                            f"Step {spec.name} of the {self.key} pipeline failed: {record.get('reason', '')} "
                            f"(run record: {self.workdir / RUN_FILE}; log: {self.workdir / spec.name / 'log.txt'}). "
                            f"Fix the cause and run the same command again: steps that succeeded are reused "
                            f"({reused} were this time)."
                        )
                    if spec.kind == "condition":
                        selected.update(record.get("branch", []))
            except KeyboardInterrupt:
                self._finish("Stopped", started, "interrupted (Ctrl-C or SIGTERM)")
                raise
            finally:
                bar.close()
            self._finish("Succeeded", started)
        return self.record

    def _finish(self, status: str, started: float, reason: str = "") -> None:
        self.record.update(status=status, finished_at=_now(), seconds=round(time.perf_counter() - started, 3))
        if reason:
            self.record["failure_reason"] = reason
        self._save()


def _branch_steps(spec: StepSpec) -> list[str]:
    return [*spec.settings.get("if_steps", ()), *spec.settings.get("else_steps", ())]


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("run_id", "status", "started_at", "finished_at", "failure_reason")
    return {key: record[key] for key in keys if key in record}


def _line(name: str, record: dict[str, Any]) -> str:
    status = "reused" if record.get("cache_hit") else record["status"].lower()
    seconds = f"{record.get('seconds', 0):7.1f} s" if not record.get("cache_hit") else " " * 9
    detail = record.get("reason", "")
    if "outcome" in record:
        detail = f"{record['value']} <= {record['threshold']}: {record['outcome']} -> {', '.join(record['branch'])}"
    if "model_package" in record:
        package = record["model_package"]
        detail = f"{package['group']} version {package['version']} ({package['status']})"
    return f"  {name:<24} {status:<10} {seconds}  {detail}".rstrip()


def run_pipeline(
    pipeline: str, workdir: str | os.PathLike[str], params: Mapping[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Run ``pipeline`` locally in ``workdir`` and return the run record.

    ``options`` are :class:`LocalRun`'s keyword arguments: ``registry``, ``group``, ``progress``,
    ``command_runner``. SIGTERM (``timeout``, a CI cancel, ``kill``) stops the run as Ctrl-C does: the step's
    training job or inference server is stopped and the run record says "Stopped".
    """
    with sigterm_interrupts():
        return LocalRun(pipeline, workdir, params, **options).run()
