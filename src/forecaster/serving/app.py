"""The inference app: ``/ping``, ``/invocations`` and ``/execution-parameters`` behind one error boundary.

Each gunicorn worker builds the app, then loads the model once at boot (:meth:`ModelHolder.start`, called from
the worker's ``post_worker_init`` hook) in a background thread, so ``/ping`` answers 503 while the model loads
and 200 only once it is ready. Every error a request can cause is a :class:`~forecaster.errors.ForecasterError`
that carries its HTTP status; anything else is a bug: 500 with a short JSON body and the traceback in the log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Flask, Response, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from forecaster.container.layout import MAX_PAYLOAD_ENV
from forecaster.contract import (
    MAX_PAYLOAD_CEILING_MB,
    MEDIAN_COLUMN,
    MEDIAN_ONLY,
    POINT_COLUMN,
    QUANTILE_CHOICES,
    quantile_column,
)
from forecaster.errors import (
    DataValidationError,
    ForecasterError,
    ModelNotReadyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from forecaster.params import Boolean, Options, coerce
from forecaster.serving import codecs, media
from forecaster.serving.environment import MB, MODEL_LOADED_LOG, ServingEnvironment

if TYPE_CHECKING:
    from forecaster.model import ForecastModel

logger = logging.getLogger("forecaster.serving")

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
#: Bodies of rejected requests are read and discarded up to this size so the client sees the answer instead of
#: a connection reset; larger ones are cut off.
DRAIN_CAP_BYTES = 256 * MB
_CHUNK = MB


class ModelHolder:
    """The model of one worker process and its loading state (``loading``, ``ready`` or ``failed``)."""

    def __init__(self, model_dir: Any, model: ForecastModel | None = None) -> None:
        self.model_dir = model_dir
        self._model = model
        self.layout = codecs.FeatureLayout.from_schema(model.schema) if model is not None else None
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self.load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and requests can be answered."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now; a failure is recorded (``/ping`` stays 503) and logged, never raised."""
        start = time.perf_counter()
        try:
            from forecaster.model import ForecastModel

            model = ForecastModel.load(self.model_dir)
            self.layout = codecs.FeatureLayout.from_schema(model.schema)
            self._model = model
        except Exception as error:
            reason = error.reason if isinstance(error, ForecasterError) else f"{type(error).__name__}: {error}"
            self._error = reason
            logger.error("Loading the model from %s failed: %s", self.model_dir, reason, exc_info=True)
            return
        self.load_seconds = time.perf_counter() - start
        logger.info("%s %s in %.2f s", MODEL_LOADED_LOG, self.model_dir, self.load_seconds)

    def start(self) -> threading.Thread:
        """Load the model in a background thread (once); ``/ping`` answers 503 until it is done."""
        if self._thread is None and not self.ready:
            self._thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
            self._thread.start()
        return self._thread or threading.current_thread()

    def get(self, wait_s: float = 0.0) -> ForecastModel:
        """The loaded model, waiting up to ``wait_s`` seconds for a load in progress.

        Requests wait instead of failing while their worker loads, so a worker that joins late (or one that was
        restarted) never answers 503 to a request the server as a whole is ready for.

        Raises:
            ModelNotReadyError: when the model is not loaded in time, or loading failed (the reason is in the
                message).
        """
        if self._model is None and self._thread is not None:
            self._thread.join(wait_s)
        if self._model is not None:
            return self._model
        if self._error is not None:
            raise ModelNotReadyError(
                f"The model in {self.model_dir} could not be loaded: {self._error} Fix the model directory "
                "(it must hold the artifact `forecaster train` writes) and restart the server."
            )
        raise ModelNotReadyError("The model is still loading. Retry when GET /ping answers 200.")

    def status(self) -> str:
        """``ready``, ``failed`` or ``loading``."""
        return "ready" if self.ready else ("failed" if self._error else "loading")


@dataclass(frozen=True)
class RequestOptions:
    """What a request asks for through ``X-Amzn-SageMaker-Custom-Attributes`` (``quantiles=all, explain=true``).

    Attributes:
        quantiles: ``p50`` (one column) or ``all`` (every quantile of the model, then the point forecast ``mean``).
        explain: add per-row SHAP contributions (LightGBM ``pred_contrib`` of the point booster).
    """

    quantiles: str = MEDIAN_ONLY
    explain: bool = False

    @classmethod
    def parse(cls, header: str | None, default_quantiles: str) -> RequestOptions:
        """Read ``key=value`` pairs separated by ``,`` or ``;`` (any case); keys the server does not know are ignored.

        Raises:
            InvalidParameterError: for a known key with an invalid value.
        """
        values: dict[str, Any] = {"quantiles": default_quantiles, "explain": False}
        constraints = {"quantiles": Options(QUANTILE_CHOICES), "explain": Boolean()}
        for pair in (header or "").replace(";", ",").split(","):
            key, _, value = pair.partition("=")
            key = key.strip().lower()
            if key in constraints:  # names and values alike in any case: quantiles=ALL
                values[key] = coerce(key, value.strip().lower(), [constraints[key]], f"the {CUSTOM_ATTRIBUTES} header")
        return cls(**values)


def read_body(limit: int | None) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes (None = no limit).

    Raises:
        PayloadTooLargeError: naming the limit and the variable that sets it.
    """
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise _too_large(length, limit)
    try:
        body = request.get_data(cache=False) if length is not None or limit is None else _read_chunked(limit)
    except (OSError, ParseException) as error:  # gunicorn's: a bad chunk size, a client gone mid-body
        raise DataValidationError(
            f"The request body could not be read ({type(error).__name__}: {error}): a malformed chunked body, or a "
            "client that stopped sending. Send the request again."
        ) from error
    if length is not None and len(body) < length:
        raise DataValidationError(
            f"The request body has {len(body)} bytes, fewer than its Content-Length ({length}): the client stopped "
            "sending. Send the request again."
        )
    return body


def _read_chunked(limit: int) -> bytes:
    """A chunked body (no length up front), refused as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while chunk := request.stream.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body has {'at least ' if request.content_length is None else ''}{size} bytes; this server "
        f"accepts at most {limit} bytes ({limit / MB:g} MB). Send smaller mini-batches (MaxPayloadInMB) or raise "
        f"{MAX_PAYLOAD_ENV} (at most {MAX_PAYLOAD_CEILING_MB})."
    )


def _drain() -> None:
    """Read and discard what is left of the body, so the client can read the error answer."""
    length = request.content_length
    if length is not None and length > DRAIN_CAP_BYTES:
        return
    stream, read = request.stream, 0
    try:
        while read < DRAIN_CAP_BYTES and (chunk := stream.read(_CHUNK)):
            read += len(chunk)
    except Exception:  # a client that went away: nothing left to answer
        logger.debug("Draining the request body failed", exc_info=True)


def _error_response(status: int, error: str, message: str) -> Response:
    return Response(
        json.dumps({"error": error, "message": message, "status": status}) + "\n",
        status=status,
        mimetype="application/json",
    )


def predict(model: ForecastModel, matrix: Any, options: RequestOptions) -> codecs.Predictions:
    """Run the model on ``matrix`` and pick the columns ``options`` asks for."""
    names = tuple(quantile_column(q) for q in model.schema.quantiles)
    values = model.predict(matrix)
    if options.quantiles == MEDIAN_ONLY:
        keep = names.index(MEDIAN_COLUMN)
        names, values = (MEDIAN_COLUMN,), values[:, keep : keep + 1]
    else:  # every quantile and the point forecast
        names, values = (*names, POINT_COLUMN), np.column_stack([values, model.predict_mean(matrix, values)])
    if not options.explain:
        return codecs.Predictions(names, values)
    contribution_names = (*model.schema.feature_names, "expected_value")
    return codecs.Predictions(names, values, contribution_names, model.contributions(matrix))


def create_app(environment: ServingEnvironment, *, model: ForecastModel | None = None) -> Flask:
    """Build the Flask app; the model comes from ``model`` or, later, ``app.extensions["forecaster"].start()``."""
    app = Flask("forecaster.serving")
    holder = ModelHolder(environment.model_dir, model)
    app.extensions["forecaster"] = holder
    limit = environment.body_limit_bytes

    @app.get("/ping")
    def ping() -> Response:
        if holder.ready:
            return Response(b"", status=200)
        return Response(f"model {holder.status()}\n", status=503, mimetype="text/plain")

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return Response(json.dumps(environment.execution_parameters()), mimetype="application/json")

    @app.post("/invocations")
    def invocations() -> Response:
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaTypeError(
                f"Content-Encoding {encoding!r} is not supported. Send the body uncompressed (batch transform "
                "does: CompressionType applies to the input files, not to the requests)."
            )
        content_type = media.request_media_type(request.headers.get("Content-Type"))
        accept = media.response_media_type(request.headers.get("Accept"), default=content_type)
        options = RequestOptions.parse(request.headers.get(CUSTOM_ATTRIBUTES), environment.default_quantiles)
        model = holder.get(wait_s=environment.timeout_s)
        body = read_body(limit)
        matrix = codecs.decode(body, content_type, holder.layout)
        predictions = predict(model, matrix, options)
        return Response(codecs.encode(predictions, accept), mimetype=accept)

    @app.errorhandler(Exception)
    def error_boundary(error: Exception) -> Response:
        _drain()
        if isinstance(error, ForecasterError):
            logger.info("%s %s -> %d %s", request.method, request.path, error.status, error.reason)
            return _error_response(error.status, type(error).__name__, error.reason)
        if isinstance(error, MethodNotAllowed):
            allowed = ", ".join(sorted(error.valid_methods or ()))
            response = _error_response(405, "MethodNotAllowed", f"{request.path} answers {allowed} only.")
            response.headers["Allow"] = allowed
            return response
        if isinstance(error, HTTPException):
            return _error_response(error.code or 500, type(error).__name__, error.description or str(error))
        logger.exception("Unhandled error in %s %s", request.method, request.path)
        return _error_response(500, "InternalServerError", "Internal server error; the traceback is in the server log.")

    return app
