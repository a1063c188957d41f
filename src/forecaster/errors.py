"""The one error tree of forecaster.

Every error knows the HTTP status a server answers with and the exit code a command ends with, so the
server, the training entry and the CLI each have a single error boundary that needs no special cases.
Messages say what was wrong and how to fix it: they are shown to users verbatim.
"""

from __future__ import annotations


class ForecasterError(Exception):
    """Base of every error forecaster raises on purpose.

    Attributes:
        status: HTTP status the server answers with.
        exit_code: exit code of a command that stops on this error.
    """

    status: int = 500
    exit_code: int = 1

    @property
    def reason(self) -> str:
        """One-line reason, safe for a failure file or an HTTP body."""
        return " ".join(str(self).split())


class InvalidParameterError(ForecasterError, ValueError):
    """A hyperparameter, CLI flag, request attribute or config value is invalid."""

    status = 400
    exit_code = 2


class DataValidationError(ForecasterError, ValueError):
    """Input data (a file, a request body, a channel) does not fit the dataset spec or feature schema."""

    status = 400
    exit_code = 3


class MissingExtraError(ForecasterError):
    """A command needs an optional dependency group (``pip install 'forecaster[EXTRA]'``) that is not installed."""

    status = 500
    exit_code = 7


class ModelArtifactError(ForecasterError):
    """The model directory is missing, incomplete or from an incompatible version."""

    status = 503
    exit_code = 4


class ModelNotReadyError(ForecasterError):
    """The server has not loaded its model (yet)."""

    status = 503


class UnsupportedMediaTypeError(ForecasterError):
    """The request's Content-Type is not one the server reads."""

    status = 415


class NotAcceptableError(ForecasterError):
    """The request's Accept header names no type the server writes."""

    status = 406


class PayloadTooLargeError(ForecasterError):
    """The request body is larger than the configured payload limit."""

    status = 413


class RegistryError(ForecasterError):
    """A model-registry operation failed (unknown group or version, illegal status change)."""

    status = 404
    exit_code = 5


class NoApprovedModelError(RegistryError):
    """A model package group has no approved version."""


class PipelineStepError(ForecasterError):
    """A pipeline step failed; the message names the step and its reason."""

    exit_code = 6


class HostError(ForecasterError):
    """A host of a multi-host training job is misconfigured, cannot be reached, or failed; the message names it."""

    exit_code = 8


class AwsError(ForecasterError):
    """An AWS call failed: no credentials or region, no network, or AWS refused it; the message says which."""

    exit_code = 9


class JobStoppedError(ForecasterError):
    """The process was asked to stop (SIGTERM) before it finished; no model was written (checkpoints may be)."""

    exit_code = 143


def shown(value: object) -> str:
    """A cell as an error message shows it: text quoted, numbers as written (no numpy type names)."""
    return repr(value) if isinstance(value, str) else str(value)
