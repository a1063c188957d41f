"""The layers of docs/ARCHITECTURE.md hold for every module: imports point downwards only, and nothing circles.

The layer table is read from docs/ARCHITECTURE.md itself (between ``<!-- layers:begin`` and ``<!-- layers:end``),
so the document and the check cannot drift apart. Function-level imports count; imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "forecaster"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
#: only these import Airflow (docs/ARCHITECTURE.md, Airflow row)
AIRFLOW_IMPORTERS = {
    "forecaster.orchestration.tasks",
    "forecaster.orchestration.dags",
    "forecaster.orchestration.operators",
}


def layer_table() -> list[tuple[str, list[str]]]:
    """(layer, module patterns) rows, lowest layer first."""
    text = ARCHITECTURE.read_text()
    block = text[text.index("<!-- layers:begin") : text.index("<!-- layers:end")]
    rows = []
    for line in block.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] in ("layer", "") or set(cells[0]) <= {"-"}:
            continue
        rows.append((cells[0], re.findall(r"`([\w.*]+)`", cells[1])))
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: every module of the package (the seed repositories' files are data copied into users' repos, not modules of it)
MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "seed" not in p.relative_to(PACKAGE).parts[:-1]}


def layer_of(module: str) -> int | None:
    for rank, (_, patterns) in enumerate(layer_table()):
        for pattern in patterns:
            package = pattern.removesuffix(".*")
            if module == pattern or (
                pattern.endswith(".*") and (module == package or fnmatch.fnmatch(module, pattern))
            ):
                return rank
    return None


def runtime_imports(path: Path) -> set[str]:
    """Dotted names imported anywhere in ``path`` except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for child in ast.walk(statement)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            names.update(submodules or {node.module})  # `from forecaster import metrics` imports the module
    return names


def package_imports(module: str) -> set[str]:
    return {name for name in runtime_imports(MODULES[module]) if name in MODULES and name != module}


def test_the_table_is_read():
    names = [name for name, _ in layer_table()]
    assert names[0] == "domain" and "CLI" in names and len(names) >= 8, names


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module):
    assert layer_of(module) is not None, f"{module} is in no row of the layer table in {ARCHITECTURE.name}: add it"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_downwards(module):
    own = layer_of(module)
    table = layer_table()
    upward = sorted(name for name in package_imports(module) if (layer_of(name) or 0) > (own or 0))
    assert not upward, (
        f"{module} ({table[own][0]}) imports {[f'{n} ({table[layer_of(n)][0]})' for n in upward]}: "
        "hand it what it needs instead"
    )


def test_no_import_cycles():
    graph = {module: package_imports(module) for module in MODULES}
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - AIRFLOW_IMPORTERS))
def test_only_the_airflow_modules_import_airflow(module):
    airflow = sorted(name for name in runtime_imports(MODULES[module]) if name.split(".")[0] == "airflow")
    assert not airflow, f"{module} imports {airflow}; only {sorted(AIRFLOW_IMPORTERS)} may"


def test_the_checks_catch_a_violation(tmp_path, monkeypatch):
    """The rule is not vacuous: an upward import and a cycle are reported."""
    low, high = tmp_path / "low.py", tmp_path / "high.py"
    low.write_text("def f():\n    from forecaster.cli.main import main\n")
    high.write_text("from forecaster.low import f\n")
    monkeypatch.setitem(MODULES, "forecaster.low", low)
    monkeypatch.setitem(MODULES, "forecaster.cli.high", high)
    assert package_imports("forecaster.low") == {"forecaster.cli.main"}
    assert layer_of("forecaster.cli.main") > layer_of("forecaster.contract")
    low.write_text("def f():\n    from forecaster.cli.high import g\n")
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()


#: docs/ARCHITECTURE.md: one module per concern, under 400 lines
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_stays_under_the_line_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines < MAX_MODULE_LINES, f"{MODULES[module]} has {lines} lines: split it by concern"
