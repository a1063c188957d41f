"""A small Bitbucket Cloud REST 2.0 client for the project template's Lambdas (standard library only).

Credentials come from a Secrets Manager secret (JSON): ``{"token": "..."}`` (an access token, sent as Bearer) or
``{"username": "...", "password": "..."}`` (an account with an API token or app password, sent as Basic). The
secret may also hold ``"secured_variables": {"NAME": "value"}``: repository variables that the seeding Lambda
sets with ``secured: true``. Requests that get 429 or a 5xx are retried with exponential backoff (honouring
``Retry-After``) until the attempts or the Lambda's time run out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

LOG = logging.getLogger(__name__)
#: the API root; the environment variable BITBUCKET_API_URL replaces it (tests point it at a local server)
API_URL = "https://api.bitbucket.org/2.0"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class BitbucketError(Exception):
    """A Bitbucket request failed for good (after any retries)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"Bitbucket {method} {path} answered {status}: {body[:300]}")


def load_secret(secret_id: str, client: Any = None) -> dict[str, Any]:
    """Return the JSON secret ``secret_id`` from Secrets Manager."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    if not isinstance(secret, dict) or not (secret.get("token") or {"username", "password"} <= set(secret)):
        raise ValueError(
            f'Secret {secret_id} must be JSON with a non-empty "token", or "username" and "password" (Bitbucket '
            "credentials); the trigger's secret that the project stack creates holds an empty token until you put "
            "a repository access token of the deploy repository (scope Pipelines: Write) in it."
        )
    return secret


def authorization(secret: Mapping[str, Any]) -> str:
    """Return the Authorization header value for the credentials in ``secret``."""
    if secret.get("token"):
        return f"Bearer {secret['token']}"
    pair = f"{secret['username']}:{secret['password']}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


class Bitbucket:
    """Bitbucket REST 2.0 calls with retries.

    Args:
        secret: credentials (see the module docstring).
        base_url: API root (default: $BITBUCKET_API_URL, else :data:`API_URL`).
        attempts: tries per request on 429/5xx and connection errors.
        backoff: first wait in seconds; doubles per retry (capped at 30 s).
        deadline: ``time.monotonic()`` value after which no retry starts (the Lambda's remaining time).
        sleep: the wait function (default: ``time.sleep``).
    """

    def __init__(
        self,
        secret: Mapping[str, Any],
        base_url: str | None = None,
        attempts: int = 5,
        backoff: float = 1.0,
        deadline: float | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("BITBUCKET_API_URL") or API_URL).rstrip("/")
        self.headers = {"Authorization": authorization(secret), "Accept": "application/json"}
        self.attempts, self.backoff, self.deadline = attempts, backoff, deadline
        self.sleep = sleep or time.sleep

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        form: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON answer (None for an empty one, or a 404 if ``missing_ok``).

        Raises:
            BitbucketError: for any other 4xx, or a 429/5xx that outlasts the retries.
        """
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        headers = dict(self.headers)
        data = None
        if form is not None:
            data, headers["Content-Type"] = _multipart(form)
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        # a POST that may have been carried out (a 5xx, a timeout) is not sent again: a second pipeline run or
        # commit would follow; 429 (not carried out) and a connection that never opened are retried
        repeatable = method != "POST"
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
                    text = r.read().decode() or "null"
                    return json.loads(text) if "json" in r.headers.get("Content-Type", "json") else text
            except urllib.error.HTTPError as error:
                status, text, retry_after = error.code, error.read().decode(errors="replace"), error.headers
                if status == 404 and missing_ok:
                    return None
                retry = status in RETRY_STATUSES and (repeatable or status == 429)
                if not retry or not self._may_retry(attempt, retry_after.get("Retry-After")):
                    raise BitbucketError(method, path, status, text) from None
            except (urllib.error.URLError, TimeoutError) as error:
                unsent = isinstance(getattr(error, "reason", None), ConnectionRefusedError | socket.gaierror)
                if not (repeatable or unsent) or not self._may_retry(attempt, None):
                    raise BitbucketError(method, path, 0, str(error)) from None
            LOG.warning("Bitbucket %s %s: retry %d of %d", method, path, attempt, self.attempts - 1)
        raise AssertionError("unreachable")

    def _may_retry(self, attempt: int, retry_after: str | None) -> bool:
        if attempt >= self.attempts:
            return False
        wait = min(self.backoff * 2 ** (attempt - 1), 30.0)
        if retry_after and retry_after.isdigit():
            wait = max(wait, float(retry_after))
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            return False
        self.sleep(wait)
        return True

    def pages(self, path: str) -> Iterator[dict]:
        """Yield every item of a paginated collection."""
        page = self.request("GET", path)
        while page:
            yield from page.get("values", [])
            page = self.request("GET", page["next"]) if page.get("next") else None


def _multipart(fields: Mapping[str, str]) -> tuple[bytes, str]:
    """Encode ``fields`` as multipart/form-data (the /src endpoint: one field per file path)."""
    boundary = f"forecaster-{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{urllib.parse.quote(name, safe="/._-")}"'
        parts.append(f"{header}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode() + value.encode() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
