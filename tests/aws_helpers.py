"""Fake AWS for the moto tests: one environment, so no test can reach a real account with real credentials.

The function-scoped ``fake_aws`` fixture of tests/conftest.py applies it; fixtures of a wider scope (the SDK
local-mode package's) and tests that need another region or none call :func:`use_fake_aws` themselves.
"""

from __future__ import annotations

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
