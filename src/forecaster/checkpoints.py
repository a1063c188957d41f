"""Training checkpoints: the boosters so far and the phase, so that a stopped job (spot) resumes where it was.

A :class:`Checkpoints` folder (``/opt/ml/checkpoints`` in a training job, which SageMaker syncs to the job's
``CheckpointS3Uri``) holds one ``checkpoint.json`` and booster files. The JSON names the fingerprint of the data
and hyperparameters, the phase, each finished booster (file, sha256, rounds) and the booster being trained (its
model so far, the round, the early-stopping state). Every file is written atomically and the JSON last, so a
half-written checkpoint is never read; a file whose sha256 does not match makes the whole checkpoint ignored.

A booster being trained is saved every :data:`CHECKPOINT_EVERY_ROUNDS` rounds and when the job is asked to stop
(:func:`stop_on_signal`, called by the container's SIGTERM handler): the loop then saves at the end of the round
and raises :class:`~forecaster.errors.JobStoppedError` saying where it stopped. A resumed booster continues from
its saved model (LightGBM ``init_model``) for the remaining rounds with its early-stopping state restored.
Feature rows are not saved: they are rebuilt (deterministic) on restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb

from forecaster.errors import JobStoppedError
from forecaster.io import atomic_path, write_json

logger = logging.getLogger(__name__)

#: A booster being trained is saved every this many rounds.
CHECKPOINT_EVERY_ROUNDS = 25
STATE_FILE = "checkpoint.json"
_VERSION = 1


def fingerprint(**parts: Any) -> str:
    """A digest of what a checkpoint is valid for (data digest, hyperparameters, window, row counts, versions)."""
    parts = {**parts, "lightgbm": lgb.__version__, "checkpoint_version": _VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Stop:
    """What the SIGTERM handler and the booster loop share (one training per process)."""

    requested: bool = False
    listening: Checkpoints | None = None  # a booster loop saves and stops at the end of its round
    active: Checkpoints | None = None  # checkpoints are kept: the stop message says which


_STOP = _Stop()


def stop_on_signal() -> bool:
    """React to SIGTERM when checkpoints are kept; return True when the booster loop will stop by itself.

    Inside a booster loop: ask it to save and stop at the end of the round (True). Outside one, with
    checkpoints: raise :class:`JobStoppedError` saying which checkpoint a restart resumes from. Without
    checkpoints: False (the caller stops as it would have).
    """
    _STOP.requested = True
    if _STOP.listening is not None:
        return True
    if _STOP.active is not None:
        raise JobStoppedError(_STOP.active.stopped_reason())
    return False


@dataclass
class Checkpoints:
    """The checkpoint folder of one training: what is saved, and what a restart resumes from."""

    directory: Path
    fingerprint: str
    every: int = CHECKPOINT_EVERY_ROUNDS
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, directory: str | Path, fingerprint: str, every: int = CHECKPOINT_EVERY_ROUNDS) -> Checkpoints:
        """Open ``directory``: a valid checkpoint of the same fingerprint is resumed, anything else ignored (logged)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        checkpoints = cls(directory, fingerprint, every, _load(directory, fingerprint) or _fresh(fingerprint))
        _STOP.active, _STOP.requested = checkpoints, False
        if checkpoints.state["boosters"] or checkpoints.state["partial"]:
            logger.info("resuming from checkpoint: %s (%s); feature rows are rebuilt", checkpoints.where(), directory)
        else:
            logger.info("checkpoints: every %d rounds into %s", every, directory)
        return checkpoints

    # ---- what is saved ------------------------------------------------------------------------------------------
    def enter(self, phase: str) -> None:
        """Record the phase the training is in."""
        self.state["phase"] = phase
        self._write_state()

    def stage(self, stage: str) -> BoosterCheckpoint:
        """The checkpoint of the boosters of ``stage`` (``fit`` or ``refit``); enters that phase."""
        self.enter(stage)
        return BoosterCheckpoint(self, stage)

    def where(self) -> str:
        """Where the saved state stands: ``phase fit, booster q50 at round 120 of 300 (finished: mean, q10)``."""
        phase, partial = self.state.get("phase", "?"), self.state.get("partial")
        text = f"phase {phase}"
        if partial and partial["stage"] == phase:
            text += f", booster {partial['name']} at round {partial['iteration']} of {partial['total']}"
        finished = list(self.state["boosters"].get(phase, {}))
        return text + (f" (finished: {', '.join(finished)})" if finished else "")

    def stopped_reason(self) -> str:
        """The failure text of a job stopped with checkpoints: where it stopped and that a restart resumes."""
        return (
            f"Training was stopped (SIGTERM: spot interruption, MaxRuntimeInSeconds or StopTrainingJob) in "
            f"{self.where()}. The checkpoint in {self.directory} holds the boosters so far: a restarted job with "
            "the same checkpoint folder (CheckpointS3Uri) resumes from there; no model was written."
        )

    def close(self) -> None:
        """The training no longer listens to stop requests through these checkpoints."""
        _STOP.active = _STOP.listening = None

    # ---- files ----------------------------------------------------------------------------------------------------
    def save_booster(self, file: str, booster: lgb.Booster) -> dict[str, str]:
        text = booster.model_to_string()
        with atomic_path(self.directory / file) as tmp:
            tmp.write_text(text)
        return {"file": file, "sha256": _sha256(text)}

    def read_booster(self, entry: dict[str, Any]) -> lgb.Booster:
        return lgb.Booster(model_str=(self.directory / entry["file"]).read_text())

    def _write_state(self) -> None:
        write_json(self.state, self.directory / STATE_FILE)


class BoosterCheckpoint:
    """The boosters of one stage: finished ones are loaded, the interrupted one resumes, the others train anew."""

    def __init__(self, checkpoints: Checkpoints, stage: str) -> None:
        self.checkpoints = checkpoints
        self.stage = stage

    def finished(self, name: str) -> tuple[lgb.Booster, int] | None:
        """The saved final booster ``name`` of this stage and its rounds, or None."""
        entry = self.checkpoints.state["boosters"].get(self.stage, {}).get(name)
        return (self.checkpoints.read_booster(entry), int(entry["rounds"])) if entry else None

    def done(self, name: str, booster: lgb.Booster, rounds: int) -> None:
        """Save the final booster ``name`` (its marker in the state); drop the interrupted one it came from."""
        state = self.checkpoints.state
        entry = self.checkpoints.save_booster(f"{self.stage}-{name}.txt", booster)
        state["boosters"].setdefault(self.stage, {})[name] = {**entry, "rounds": int(rounds)}
        if state["partial"] and (state["partial"]["stage"], state["partial"]["name"]) == (self.stage, name):
            state["partial"] = None
        self.checkpoints._write_state()
        if _STOP.requested:  # stopped between two boosters: what is done is saved
            raise JobStoppedError(self.checkpoints.stopped_reason())

    def run(self, name: str, total: int, stopping_rounds: int) -> BoosterRun:
        """How to train booster ``name`` for ``total`` rounds: from scratch, or from its saved model."""
        partial = self.checkpoints.state["partial"]
        if partial and (partial["stage"], partial["name"], partial["total"]) == (self.stage, name, total):
            run = BoosterRun(self, name, total, stopping_rounds, init_model=self.checkpoints.read_booster(partial))
            run.iteration, run.best_iteration = int(partial["iteration"]), int(partial["best_iteration"])
            run.best_score = [tuple(score) for score in partial["best_score"]]
            return run
        return BoosterRun(self, name, total, stopping_rounds)


class BoosterRun:
    """One booster's training: the LightGBM callback that stops early (resumably), saves, and stops on request.

    Early stopping follows LightGBM's ``early_stopping`` on one validation set and metric: the best round is the
    lowest (or, for a higher-better metric, highest) score; training ends ``stopping_rounds`` rounds after it or
    at the last round, and the booster's ``best_iteration`` is the best round. Its state is saved with the model.
    """

    order = 30  # where LightGBM's early stopping runs among the callbacks

    def __init__(
        self,
        owner: BoosterCheckpoint,
        name: str,
        total: int,
        stopping_rounds: int,
        init_model: lgb.Booster | None = None,
    ) -> None:
        self.owner, self.name, self.total, self.stopping_rounds = owner, name, total, stopping_rounds
        self.init_model = init_model
        self.iteration = 0  # rounds done
        self.best_iteration = -1  # 0-based, as LightGBM's callback env counts
        self.best_score: list[tuple] = []

    @property
    def remaining(self) -> int:
        """Rounds still to train."""
        return self.total - self.iteration

    @property
    def stopped_early(self) -> bool:
        """The saved state already ended this booster (nothing left to train)."""
        return self.remaining <= 0 or (
            self.stopping_rounds > 0 and self.iteration - 1 - self.best_iteration >= self.stopping_rounds
        )

    def callbacks(self, progress: Callable[[Any], None] | None = None) -> list[Callable[..., Any]]:
        """Callbacks for ``lgb.train``: this run's, then ``progress``."""
        return [self, progress] if progress is not None else [self]

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        self.iteration = env.iteration + 1
        if self.stopping_rounds > 0 and env.evaluation_result_list:
            score, best = env.evaluation_result_list[0], self.best_score[0] if self.best_score else None
            if best is None or (score[2] > best[2] if score[3] else score[2] < best[2]):
                self.best_iteration, self.best_score = env.iteration, list(env.evaluation_result_list)
        if _STOP.requested:
            self._save(env.model)
            raise JobStoppedError(self.owner.checkpoints.stopped_reason())
        if self.iteration % self.owner.checkpoints.every == 0:
            self._save(env.model)
        waited = env.iteration - self.best_iteration
        if self.stopping_rounds > 0 and self.best_score and (waited >= self.stopping_rounds or self.remaining <= 0):
            raise lgb.callback.EarlyStopException(self.best_iteration, self.best_score)

    def __enter__(self) -> BoosterRun:
        _STOP.listening = self.owner.checkpoints
        if _STOP.requested:  # asked to stop between two boosters
            raise JobStoppedError(self.owner.checkpoints.stopped_reason())
        return self

    def __exit__(self, *exc: Any) -> None:
        _STOP.listening = None

    def _save(self, booster: lgb.Booster) -> None:
        checkpoints = self.owner.checkpoints
        entry = checkpoints.save_booster(f"{self.owner.stage}-{self.name}.partial.txt", booster)
        checkpoints.state["partial"] = {
            **entry,
            "stage": self.owner.stage,
            "name": self.name,
            "iteration": self.iteration,
            "total": self.total,
            "best_iteration": self.best_iteration,
            "best_score": [list(score) for score in self.best_score],
        }
        checkpoints.state["phase"] = self.owner.stage
        checkpoints._write_state()


def _fresh(fingerprint: str) -> dict[str, Any]:
    return {"version": _VERSION, "fingerprint": fingerprint, "phase": None, "boosters": {}, "partial": None}


def _load(directory: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state when it is complete and of this fingerprint; None (and a log line why) otherwise."""
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        entries = [e for stage in state["boosters"].values() for e in stage.values()]
        entries += [state["partial"]] if state["partial"] else []
        if state.get("version") != _VERSION:
            raise ValueError(f"version {state.get('version')}, not {_VERSION}")
        if state["fingerprint"] != fingerprint:
            logger.warning(
                "ignoring the checkpoint in %s: it belongs to another training (other data or hyperparameters); "
                "starting over", directory,
            )  # fmt: skip
            return None
        for entry in entries:
            text = (directory / entry["file"]).read_text()
            if _sha256(text) != entry["sha256"]:
                raise ValueError(f"{entry['file']} does not match its sha256 (a partial or corrupt file)")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("ignoring the checkpoint in %s: it is unreadable or incomplete (%s); starting over", path, error)
        return None
    return state


def resume_booster(
    params: dict[str, Any],
    train: lgb.Dataset,
    valid_sets: list[lgb.Dataset],
    run: BoosterRun,
    callbacks: list[Callable[..., Any]],
) -> lgb.Booster:
    """``lgb.train`` for the run's remaining rounds: from its saved model (``init_model``) when it has one.

    The datasets must keep their raw data (``free_raw_data=False``): LightGBM scores them with the saved model.
    Their init scores are cleared afterwards (the datasets are shared by the next booster).
    """
    with run:
        if run.init_model is not None:
            logger.info(
                "resuming booster %s of phase %s at round %d of %d", run.name, run.owner.stage, run.iteration, run.total
            )
        if run.init_model is not None and run.stopped_early:
            booster = run.init_model
        else:
            booster = lgb.train(
                params, train, run.remaining, valid_sets=valid_sets, init_model=run.init_model,
                callbacks=[run, *callbacks],
            )  # fmt: skip
    if run.init_model is not None:  # set_init_score(None) keeps LightGBM's copy: clear the field itself
        for dataset in (train, *valid_sets):
            dataset.set_field("init_score", None)
            dataset.init_score = None
    if run.stopping_rounds > 0:
        booster.best_iteration = run.best_iteration + 1
    return booster


def open_checkpoints(directory: str | Path | None, **fingerprint_parts: Any) -> Checkpoints | None:
    """:meth:`Checkpoints.open` with the fingerprint of ``fingerprint_parts``; None without a ``directory``."""
    return Checkpoints.open(directory, fingerprint(**fingerprint_parts)) if directory is not None else None
