"""Fake AWS for the moto tests: one environment, so no test can reach a real account with real credentials.

The function-scoped ``fake_aws`` fixture of tests/conftest.py applies it; fixtures of a wider scope (the SDK
local-mode package's) and tests that need another region or none call :func:`use_fake_aws` themselves.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import pytest

#: The region of the moto tests, unless a test needs another.
TEST_REGION = "eu-west-1"
#: moto's credentials: a request signed with them cannot reach a real account.
FAKE_CREDENTIALS = MappingProxyType(
    {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
)
#: What could route a request past the fake credentials or past moto: a named profile, an endpoint.
_ROUTES_ELSEWHERE = ("AWS_PROFILE", "AWS_ENDPOINT_URL")
_REGIONS = ("AWS_DEFAULT_REGION", "AWS_REGION")
#: moto_server with stand-ins for the CloudFormation types moto lacks (run as a script, never imported here:
#: importing it would register its stand-ins in the test process's own moto)
STANDINS = Path(__file__).with_name("moto_standins.py")


def use_fake_aws(patch: pytest.MonkeyPatch, region: str | None = TEST_REGION) -> None:
    """Point the environment at moto through ``patch``: fake credentials, no profile or endpoint, ``region``.

    Args:
        patch: the monkeypatch that undoes it (a test's ``monkeypatch`` or a ``pytest.MonkeyPatch.context()``).
        region: the default region (``AWS_DEFAULT_REGION`` and ``AWS_REGION``); None removes both, for a test
            that the code under test passes its region explicitly.
    """
    for name, value in FAKE_CREDENTIALS.items():
        patch.setenv(name, value)
    for name in _ROUTES_ELSEWHERE:
        patch.delenv(name, raising=False)
    for name in _REGIONS:
        if region is None:
            patch.delenv(name, raising=False)
        else:
            patch.setenv(name, region)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def standins_server(log: Path, port: int | None = None, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``tests/moto_standins.py`` on 127.0.0.1 (``port`` or a free one); yield its URL, stop it after.

    Args:
        log: the file its stdout and stderr go to; shown when it dies before it listens.
        port: the port, when the caller must know it before the server starts (to put the URL in ``env``).
        env: the server's environment (default: this process's).
    """
    port = port or free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, str(STANDINS), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
            env=None if env is None else dict(env),
        )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
