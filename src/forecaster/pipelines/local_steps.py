"""What each kind of step does in the local runner (:mod:`forecaster.pipelines.local`).

Every executor gets a :class:`StepContext` (the step, its folder, its resolved inputs and the parameters), does
what the SageMaker job would do with local folders, and returns extra fields for the step's record; it raises
:class:`~forecaster.errors.PipelineStepError` with the reason when the step fails.

- ``processing``: ``forecaster <command> <args>``, through the :data:`CommandRunner` the runner was handed: the
  CLI hands its own parser and handler (in this process); the default runs the ``forecaster`` program in a
  subprocess, as a processing job runs it in the image.
- ``training``: an ``/opt/ml`` job tree + the ``sagemaker-training`` toolkit in a subprocess
  (:mod:`forecaster.container.local_job`); ``/opt/ml/model`` is packed into ``model.tar.gz`` as SageMaker does.
- ``model``: nothing to do (a SageMaker model is its image + model data; locally the model data stands for it).
- ``transform``: the model data is unpacked (as into ``/opt/ml/model``) and the real server runs the batch
  transform (:func:`forecaster.serving.transform.run_transform`).
- ``condition`` / ``fail``: a JSON property file against a parameter; the fail step stops the run.
- ``register``: a new version in the model registry, with the baseline files and lineage.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from forecaster.errors import ForecasterError, PipelineStepError
from forecaster.io import read_json, write_json
from forecaster.pipelines.table import PipelineSpec, StepSpec, absent_inputs, render_args

#: Runs ``forecaster <argv>`` and returns its exit code (raising ForecasterError, or SystemExit for arguments the
#: command rejects, is fine too); what it prints goes to ``sys.stdout`` / ``sys.stderr``.
CommandRunner = Callable[[Sequence[str]], int]


def run_forecaster_program(argv: Sequence[str]) -> int:
    """The default :data:`CommandRunner`: the ``forecaster`` program (next to this Python) in a subprocess."""
    program = Path(sys.executable).with_name("forecaster")
    if not program.is_file():
        raise PipelineStepError(f"the `forecaster` program is not installed next to {sys.executable}")
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run([str(program), *argv], stdout=sys.stdout, stderr=sys.stderr, check=False).returncode


#: ``<workdir>/.registered/<run id>/``: the copies of a registered version's model and baselines (hidden: no report
#: or step reads them as a step's output)
REGISTERED_DIR = ".registered"


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the block (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Training-job log lines that carry metrics (``validation:wape=0.23;``).
_METRIC_LINE = re.compile(r"^(?P<name>(?:train|validation):[\w.-]+)=(?P<value>[0-9.eE+-]+);", re.MULTILINE)


@dataclass
class StepContext:
    """What an executor needs to run one step locally.

    Attributes:
        pipeline: the pipeline the step belongs to.
        spec: the step from the table.
        folder: ``<workdir>/<step>``; outputs go to ``folder/output/<name>``.
        inputs: input name -> the local file or directory it is read from.
        params: every pipeline parameter, as the strings the SDK would render.
        output_of: ``(step, output)`` -> the local path of another step's output.
        registry_url: the model registry the register step writes to.
        run_id: this execution's id (lineage of a registered model).
        run_command: what runs a processing step's ``forecaster`` command line.
    """

    pipeline: PipelineSpec
    spec: StepSpec
    folder: Path
    inputs: dict[str, Path]
    params: dict[str, str]
    output_of: Callable[[str, str], Path]
    registry_url: str = ""
    run_id: str = ""
    run_command: CommandRunner = run_forecaster_program

    @property
    def log(self) -> Path:
        """The step's log file."""
        return self.folder / "log.txt"

    def output(self, name: str) -> Path:
        """Local folder of this step's output ``name`` (``/opt/ml/processing/output/<name>`` in a job)."""
        return self.folder / "output" / name

    def param(self, name: str) -> str:
        """Value of parameter ``name``."""
        return self.params[name]


def processing_argv(ctx: StepContext) -> list[str]:
    """The ``forecaster`` argv of a processing step, placeholders resolved to local folders."""
    args = render_args(
        ctx.spec,
        input_dir=lambda name: str(ctx.inputs[name]),
        output_root=str(ctx.folder / "output"),
        param=ctx.param,
        absent=absent_inputs(ctx.spec, ctx.param),
    )
    return [*ctx.spec.command, *map(str, args)]


@contextlib.contextmanager
def _captured(log: TextIO) -> Iterator[None]:
    """Send stdout, stderr and log records (INFO and up) to ``log`` for the duration of the block."""
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    quiet = [(h, h.level) for h in root.handlers]
    level = root.level
    for existing, _ in quiet:
        existing.setLevel(logging.WARNING)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for existing, old in quiet:
            existing.setLevel(old)


def run_processing(ctx: StepContext) -> dict[str, Any]:
    """Run ``forecaster <command> <args>`` through ``ctx.run_command``; what it prints and logs goes to the log."""
    argv = processing_argv(ctx)
    with open(ctx.log, "a", encoding="utf-8") as log:
        log.write(f"$ forecaster {' '.join(argv)}\n")
        log.flush()
        try:
            with _captured(log):
                code = int(ctx.run_command(argv) or 0)
        except ForecasterError as error:
            raise PipelineStepError(error.reason) from error
        except SystemExit:  # argparse: the table passed arguments the command does not take
            raise PipelineStepError(f"its arguments were rejected by `forecaster {argv[0]}`; see {ctx.log}") from None
        except Exception as error:  # an unexpected failure of the command: keep its traceback in the log
            log.write(traceback.format_exc())
            raise PipelineStepError(f"{type(error).__name__}: {error} (traceback in {ctx.log})") from error
    if code != 0:
        raise PipelineStepError(f"`forecaster {' '.join(argv[:2])} ...` exited with code {code}; see {ctx.log}")
    return {"argv": ["forecaster", *argv]}


def run_training(ctx: StepContext) -> dict[str, Any]:
    """A training job: ``/opt/ml`` tree under ``folder/job``, the toolkit in a subprocess, then ``model.tar.gz``."""
    from forecaster.artifact import MODEL_TARBALL, pack_model
    from forecaster.container.layout import ContainerTree
    from forecaster.container.local_job import run_training_job, write_job_tree

    settings = ctx.spec.settings
    hyperparameters = {name: ctx.param(param) for name, param in settings["hyperparameters"].items()}
    job = ContainerTree(ctx.folder / "job")
    write_job_tree(job.base, hyperparameters, ctx.inputs)
    result = run_training_job(job.base, timeout=float(ctx.param(settings["max_runtime"])))
    ctx.log.write_text(f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n", encoding="utf-8")
    shutil.rmtree(job.data_dir, ignore_errors=True)  # the channel copies (the inputs stay where they are)
    if result.returncode != 0:
        text = job.failure_file.read_text().strip() if job.failure_file.is_file() else ""
        reason = text.splitlines()[0] if text else result.stderr[-500:].strip()
        raise PipelineStepError(f"the training job exited with code {result.returncode}: {reason} (log: {ctx.log})")
    tarball = pack_model(job.model_dir, ctx.output("model") / MODEL_TARBALL)
    metrics = {m["name"]: float(m["value"]) for m in _METRIC_LINE.finditer(result.stdout)}
    return {"hyperparameters": hyperparameters, "metrics": metrics, "model_data": str(tarball)}


def run_model(ctx: StepContext) -> dict[str, Any]:
    """A SageMaker model is an image, model data and an environment; locally the model data stands for it."""
    settings = ctx.spec.settings
    return {
        "model_data": str(ctx.inputs["model"]),
        "image": ctx.param(settings["image"]),
        "environment": dict(settings.get("environment", {})),
    }


def unpack_model(model_data: Path, target: Path) -> Path:
    """Unpack ``model_data`` into ``target``, as SageMaker unpacks the model data into ``/opt/ml/model``.

    ``model_data`` is a ``model.tar.gz``, a folder holding one, or a model folder (returned as it is).
    """
    from forecaster.artifact import MODEL_TARBALL, SCHEMA_FILE
    from forecaster.artifact import unpack_model as unpack

    tarball = model_data / MODEL_TARBALL if model_data.is_dir() else model_data
    if model_data.is_dir() and (model_data / SCHEMA_FILE).is_file():
        return model_data
    if not tarball.is_file():
        raise PipelineStepError(f"No model data at {model_data}: expected a {MODEL_TARBALL} or a model folder.")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        return unpack(tarball, target)
    except ForecasterError as error:
        raise PipelineStepError(error.reason) from error


def run_transform_step(ctx: StepContext) -> dict[str, Any]:
    """Batch transform through the real inference server (``forecaster serve`` on 127.0.0.1)."""
    from forecaster.serving.transform import run_transform

    settings = ctx.spec.settings
    model_dir = unpack_model(ctx.inputs["model"], ctx.folder / "model")
    source = ctx.inputs["data"]
    # the container's environment as SageMaker composes it: the model's, then the transform job's
    model_step = ctx.pipeline.step(ctx.spec.inputs["model"].split(":")[1].split("/")[0])
    lineage = {name: ctx.param(param) for name, param in settings.get("env", {}).items()}
    environment = {**model_step.settings.get("environment", {}), **settings.get("environment", {}), **lineage}
    try:
        written = run_transform(
            model_dir,
            source,
            ctx.output("predictions"),
            max_payload_mb=int(ctx.param("TransformMaxPayloadInMB")),
            concurrency=int(ctx.param("TransformMaxConcurrent")),
            content_type=settings["content_type"],
            accept=settings["accept"],
            environment=environment,
        )
    except ForecasterError as error:
        raise PipelineStepError(error.reason) from error
    return {"written": [str(path) for path in written], "environment": environment}


def json_value(document: Any, path: str) -> Any:
    """The value at a dotted JSON path (``regression_metrics.wape.value``), as ``JsonGet`` reads it."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise PipelineStepError(f"the property file has no value at {path!r} (missing {part!r})")
        value = value[part]
    return value


def property_value(ctx: StepContext, producer: str, file_name: str, json_path: str) -> Any:
    """``JsonGet(step_name=producer, property_file=file_name, json_path=...)`` on the local output."""
    name, output, path = ctx.pipeline.step(producer).settings["property_file"]
    if name != file_name:
        raise PipelineStepError(f"step {producer} has no property file {file_name!r}")
    return json_value(read_json(ctx.output_of(producer, output) / path), json_path)


def run_condition(ctx: StepContext) -> dict[str, Any]:
    """``value <= parameter``: the outcome picks the ``if_steps`` or the ``else_steps``."""
    settings = ctx.spec.settings
    producer, file_name = settings["property_file"]
    value = property_value(ctx, producer, file_name, settings["json_path"])
    threshold = float(ctx.param(settings["at_most"]))
    outcome = isinstance(value, int | float) and not isinstance(value, bool) and value <= threshold
    branch = settings["if_steps"] if outcome else settings["else_steps"]
    return {"value": value, "threshold": threshold, "outcome": bool(outcome), "branch": list(branch)}


def run_fail(ctx: StepContext) -> dict[str, Any]:
    """Stop the run with the step's message (metric and threshold filled in)."""
    settings = ctx.spec.settings
    before, after = settings["message"]
    producer, file_name, json_path = settings["metric"]
    value = property_value(ctx, producer, file_name, json_path)
    raise PipelineStepError(" ".join([before, str(value), after, ctx.param(settings["threshold"])]))


def _scalar_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """wape, bias, mae, rmse (overall) and r2 of an ``evaluation.json``: the registry's scalar metrics."""
    overall = (evaluation.get("forecast_metrics") or {}).get("overall") or {}
    metrics = {k: overall.get(k) for k in ("wape", "bias", "mae", "rmse")}
    metrics["r2"] = ((evaluation.get("regression_metrics") or {}).get("r2") or {}).get("value")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _keep(source: Path, workdir: Path, kept: Path) -> Path:
    """``source`` (a step's output file) in a copy of its whole output folder under ``kept`` (absolute).

    The files beside it go too: a data-quality check reads the statistics next to the constraints. Each folder is
    copied once.
    """
    folder = source.parent.resolve()
    copy = kept.resolve() / folder.relative_to(workdir.resolve())
    if not copy.exists():
        shutil.copytree(folder, copy)
    return copy / source.name


def run_register(ctx: StepContext) -> dict[str, Any]:
    """Register the trained model (``PendingManualApproval`` by default) with baselines and lineage."""
    from forecaster.artifact import MODEL_TARBALL
    from forecaster.registry import open_registry

    settings = ctx.spec.settings
    model_data = ctx.inputs["model"]
    if (model_data / MODEL_TARBALL).is_file():
        model_data = model_data / MODEL_TARBALL
    baselines = {}
    for kind, (step, output, name) in settings["files"].items():
        path = ctx.output_of(step, output) / name
        if not path.is_file():
            raise PipelineStepError(f"{kind}: {path} does not exist (step {step} wrote no {name})")
        baselines[kind] = str(path)
    evaluation = Path(baselines.get("model_quality_statistics", ""))
    metrics = _scalar_metrics(read_json(evaluation)) if evaluation.is_file() else {}
    # the version's own copies: a later run in this workdir rewrites the step outputs in place (SageMaker writes
    # each execution's outputs apart), and a version must keep the model and baselines it was approved with
    workdir = ctx.folder.parent
    kept = workdir / REGISTERED_DIR / ctx.run_id
    model_data = _keep(model_data, workdir, kept)
    baselines = {kind: str(_keep(Path(path), workdir, kept)) for kind, path in baselines.items()}
    lineage = {key: ctx.param(param) for key, param in settings["lineage"].items()}
    lineage["parent_run"] = ctx.run_id
    try:
        version = open_registry(ctx.registry_url).register(
            ctx.param(settings["group"]),
            str(model_data),
            image_uri=ctx.param(settings["image"]),
            status=ctx.param(settings["approval_status"]),
            metrics=metrics,
            baselines=baselines,
            lineage=lineage,
            description=f"Registered by local run {ctx.run_id}",
        )
    except ForecasterError as error:
        raise PipelineStepError(error.reason) from error
    package = version.to_dict()
    write_json(package, ctx.output("model_package") / "model_package.json")
    return {"model_package": package}


#: step kind -> executor
EXECUTORS: dict[str, Callable[[StepContext], dict[str, Any]]] = {
    "processing": run_processing,
    "training": run_training,
    "model": run_model,
    "transform": run_transform_step,
    "condition": run_condition,
    "fail": run_fail,
    "register": run_register,
}
