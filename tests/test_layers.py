"""The layers of docs/ARCHITECTURE.md: imports point downwards only (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "forecaster"
DOMAIN = ("errors", "params", "spec", "io", "synth", "features", "model", "artifact", "config", "metrics", "contract")
HIGHER_THAN_DOMAIN = ("forecaster.checks", "forecaster.pipelines", "forecaster.registry", "forecaster.serving")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def below_the_cli() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts and p.name != "demo.py"]


@pytest.mark.parametrize("path", below_the_cli(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_cli_imports_it(path):
    upward = sorted(name for name in imported_modules(path) if name.startswith("forecaster.cli"))
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}: hand it what it needs instead"


@pytest.mark.parametrize("name", DOMAIN)
def test_the_domain_imports_no_higher_layer(name):
    imported = imported_modules(PACKAGE / f"{name}.py")
    upward = [n for n in imported if n.startswith(("forecaster.cli", *HIGHER_THAN_DOMAIN))]
    assert not upward, f"{name}.py imports {sorted(upward)}"
