"""Start the inference server: gunicorn sync workers running the Flask app, configured from the environment.

Choices, and why:

* **sync workers, no ``preload_app``.** Each worker builds the app after the fork and loads the model in a
  background thread from ``post_worker_init``: ``/ping`` answers 503 while it loads and 200 only after a
  successful load, in that very worker. The master imports the heavy libraries before forking (not the model,
  and it never predicts, so no OpenMP thread pool is forked), which keeps worker boot fast.
* **LightGBM threads** = CPUs / workers (``OMP_NUM_THREADS`` unless set), so the workers do not oversubscribe.
* **timeout** ≥ batch transform's invocation timeout; **graceful stop** on SIGTERM (finish in-flight requests,
  within ``graceful_timeout``, before SageMaker's SIGKILL 30 s later).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from forecaster.container.layout import MODEL_SERVER_TIMEOUT_ENV, OMP_THREADS_ENV
from forecaster.contract import SERVE_PARENT_PID_ENV
from forecaster.serving.environment import ServingEnvironment

logger = logging.getLogger("forecaster.serving")

#: Seconds workers get to finish in-flight requests after SIGTERM (SageMaker sends SIGKILL after 30 s).
GRACEFUL_TIMEOUT_S = 25
#: Imported in the master so forked workers start with them loaded (importing starts no threads).
PRELOADED_MODULES = ("numpy", "pandas", "pyarrow.csv", "lightgbm", "forecaster.serving.app", "forecaster.model")


def _post_worker_init(worker: Any) -> None:
    """Gunicorn hook: start loading this worker's model as soon as the worker has built its app."""
    import pyarrow

    pyarrow.set_cpu_count(int(os.environ[OMP_THREADS_ENV]))  # CSV parsing threads, like LightGBM's (serve sets it)
    # gunicorn owns the signals: SIGTERM means "finish the request", not "cancel the CSV parse in progress"
    pyarrow.enable_signal_handlers(False)
    worker.wsgi.extensions["forecaster"].start()


def _worker_abort(worker: Any) -> None:
    """Gunicorn hook: a request ran past the worker timeout; name the setting (gunicorn's own line guesses memory)."""
    worker.log.error(
        "A request ran longer than %d s (%s): its worker is stopped and the request fails with a 500. Raise %s "
        "(and the transform's InvocationsTimeoutInSeconds, up to 3600), or send smaller mini-batches "
        "(MaxPayloadInMB).", worker.cfg.timeout, MODEL_SERVER_TIMEOUT_ENV, MODEL_SERVER_TIMEOUT_ENV,
    )  # fmt: skip


def gunicorn_options(environment: ServingEnvironment) -> dict[str, Any]:
    """Gunicorn settings for ``environment`` (what a ``gunicorn.conf.py`` would hold)."""
    return {
        "bind": [f"{environment.host}:{environment.port}"],
        "workers": environment.workers,
        "worker_class": "sync",
        "timeout": environment.timeout_s,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "preload_app": False,
        "post_worker_init": _post_worker_init,
        "worker_abort": _worker_abort,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "forecaster-serve",
        "backlog": 2048,
        "control_socket_disable": True,  # one shared ~/.gunicorn/gunicorn.ctl would collide between servers
    }


class InferenceServer(BaseApplication):
    """Gunicorn application whose workers each build the Flask app for one :class:`ServingEnvironment`."""

    def __init__(self, environment: ServingEnvironment) -> None:
        self.environment = environment
        super().__init__(prog="forecaster serve")

    def load_config(self) -> None:
        """Copy :func:`gunicorn_options` into gunicorn's config (no config file, no command line)."""
        for key, value in gunicorn_options(self.environment).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the app in the worker (the model is loaded by the ``post_worker_init`` hook)."""
        from forecaster.serving.app import create_app

        return create_app(self.environment)


def _stop_with_parent() -> None:
    """On Linux, SIGTERM this server when the process named by ``SERVE_PARENT_PID_ENV`` dies.

    The local transform starts a server for its batch; a runner killed with SIGKILL (an Airflow worker's OOM
    kill) cannot stop it, and it would keep its port and memory for ever.
    """
    parent = os.environ.pop(SERVE_PARENT_PID_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    # PR_SET_PDEATHSIG fires when the *thread* that started this process ends: ServerProcess.start runs in the
    # thread that also stops the server (the local transform's main thread), so that is the runner's end
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def serve(environment: ServingEnvironment) -> None:
    """Run gunicorn in this process until SIGTERM/SIGINT; ``SystemExit`` carries gunicorn's exit status."""
    _stop_with_parent()
    os.environ[OMP_THREADS_ENV] = str(environment.threads_per_worker)  # checked: an integer, also from "2,1"
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # the worker's model load reports it with the reason
            logger.warning("Could not pre-import %s", name, exc_info=True)
    logger.info(
        "Serving %s on %s:%d with %d worker(s), %d thread(s) each, body limit %s bytes",
        environment.model_dir,
        environment.host,
        environment.port,
        environment.workers,
        environment.threads_per_worker,
        environment.body_limit_bytes,
    )
    InferenceServer(environment).run()
