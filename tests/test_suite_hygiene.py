"""The test suite itself: every test checks something, and every ``test_*.py`` module holds tests.

A test "checks something" when its body, or a helper function defined under ``tests/`` that it calls (followed
transitively, by name), contains an ``assert``, ``pytest.raises``/``pytest.warns``/``pytest.fail`` or an
``assert_*`` call (``np.testing.assert_allclose``, ``pd.testing.assert_frame_equal``, ...). A test that only
runs code, prints or skips cannot fail and is a defect. Measurements belong in ``bench/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: Calls that are checks by name (``pytest.raises(...)``, ``np.testing.assert_allclose(...)``, ...).
CHECK_CALLS = frozenset({"raises", "warns", "fail", "deprecated_call"})
#: Tests allowed to check nothing, each with the reason. Keep it empty unless there is a very good reason.
EXCEPTIONS: dict[str, str] = {}


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return node.func.id if isinstance(node.func, ast.Name) else None


def _scan(function: ast.AST) -> tuple[bool, set[str]]:
    """(whether ``function`` checks something itself, the names of the functions it calls)."""
    calls: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True, calls
        if isinstance(node, ast.Call) and (name := _call_name(node)):
            if name in CHECK_CALLS or name.startswith("assert"):
                return True, calls
            calls.add(name)
    return False, calls


def unchecked_tests(sources: dict[str, str]) -> list[str]:
    """``module::test`` for every test function in ``sources`` (``{module name: code}``) that checks nothing."""
    functions: dict[str, list[ast.AST]] = {}
    tests: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for module, code in sources.items():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.setdefault(node.name, []).append(node)
                if module.startswith("test_") and node.name.startswith("test"):
                    tests.append((module, node))
    verdicts: dict[str, bool] = {}

    def checks(name: str, seen: frozenset[str]) -> bool:
        if name in verdicts:
            return verdicts[name]
        if name in seen or name not in functions:
            return False
        found = False
        for node in functions[name]:
            direct, calls = _scan(node)
            if direct or any(checks(call, seen | {name}) for call in calls):
                found = True
                break
        verdicts[name] = found
        return found

    unchecked = []
    for module, node in tests:
        direct, calls = _scan(node)
        if not (direct or any(checks(call, frozenset({node.name})) for call in calls)):
            unchecked.append(f"{module}::{node.name}")
    return unchecked


def _suite() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(TESTS.glob("*.py"))}


def test_every_test_checks_something():
    unexplained = [name for name in unchecked_tests(_suite()) if name not in EXCEPTIONS]
    assert not unexplained, (
        f"tests that cannot fail (no assert, pytest.raises/fail or assert_* call): {unexplained}. "
        "Assert on the product's behaviour, move measurements to bench/, or explain the case in EXCEPTIONS."
    )


def test_the_check_finds_tests_that_cannot_fail():
    sources = {
        "helpers": "def expect_ok(x):\n    assert x\n\ndef run(x):\n    return x\n",
        "test_demo": (
            "import pytest\n"
            "def test_prints():\n    print(run(1))\n"
            "def test_skips():\n    pytest.skip('no engine')\n"
            "def test_asserts():\n    assert run(1) == 1\n"
            "def test_via_helper():\n    expect_ok(run(1))\n"
            "def test_raises():\n    with pytest.raises(ValueError):\n        int('x')\n"
            "def test_numpy():\n    np.testing.assert_allclose(1, 1)\n"
        ),
    }
    assert unchecked_tests(sources) == ["test_demo::test_prints", "test_demo::test_skips"]


def test_test_modules_hold_tests_and_helper_modules_do_not():
    suite = _suite()
    without_tests = [name for name, code in suite.items() if name.startswith("test_") and "def test" not in code]
    assert not without_tests, f"{without_tests} are named like test modules but hold no test: rename them"
    helpers_with_tests = [
        name
        for name, code in suite.items()
        if not name.startswith("test_") and name != "conftest" and "\ndef test" in code
    ]
    assert not helpers_with_tests, f"{helpers_with_tests} define tests that pytest never collects"
