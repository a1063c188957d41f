"""Every fact of a contract is declared once: its string value stands in exactly one place of ``src/`` (docstrings
and comments aside), the module that declares it; everything else reads the name."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from forecaster import contract, registry, spec
from forecaster.checks import contract as checks_contract
from forecaster.container import layout

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "forecaster"
SEED = PACKAGE / "project" / "seed"  # files of the users' repositories, not of the package


def declared_strings(module) -> dict[str, str]:
    return {name: value for name, value in vars(module).items() if name.isupper() and isinstance(value, str)}


#: declared values that are also plain words of other things: the channel names ``train`` (the ``train``
#: sub-command, split's ``train/`` output) and ``validation`` (the validation rows' count in metadata.json); what is
#: a channel reads the constant, which the grep below cannot tell apart
COMMON_WORDS = {"train", "validation"}

FACTS = {
    **{f"checks.contract.{n}": v for n, v in declared_strings(checks_contract).items()},
    **{f"container.layout.{n}": v for n, v in declared_strings(layout).items() if v not in COMMON_WORDS},
    **{
        f"contract.{n}": getattr(contract, n)
        for n in ("FORECASTS_FILE", "ORDERS_FILE", "DEFAULT_QUANTILES_ENV", "MODEL_PACKAGE_ENV")
    },
    "spec.SPEC_FILE": spec.SPEC_FILE,
    "registry.REGISTRY_ENV": registry.REGISTRY_ENV,
    "registry.WORKDIR_REGISTRY_FILE": registry.WORKDIR_REGISTRY_FILE,
    "registry.DEFAULT_REGISTRY_URL": registry.DEFAULT_REGISTRY_URL,
}


def code_strings(path: Path) -> list[str]:
    """String constants of ``path``'s code: docstrings left out, f-string parts included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


COUNTS = Counter(value for path in PACKAGE.rglob("*.py") if SEED not in path.parents for value in code_strings(path))


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_the_value_is_written_once(fact):
    value = FACTS[fact]
    # once where it is declared, or not at all where the declaration derives it (f"{DEFAULT_BASE_DIR}/model")
    assert COUNTS[value] <= 1, f"{value!r} ({fact}) is written {COUNTS[value]} times in src/: read {fact} instead"


def test_a_second_copy_is_found(tmp_path):
    copy = tmp_path / "copy.py"
    copy.write_text('"""Doc: evaluation.json."""\nPATH = "evaluation.json"\nMORE = f"{PATH}/evaluation.json"\n')
    assert code_strings(copy).count(checks_contract.EVALUATION_FILE) == 1  # the docstring does not count
