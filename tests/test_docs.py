"""The documentation: README.md stays a short front door, and what the code says about the docs pages is true.

``make docs`` (``mkdocs build --strict``) checks the links between the pages; these tests check the other
direction: code, messages and tests that cite ``docs/<page>.md#<anchor>`` name a page and a heading that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forecaster.orchestration.config import KEYS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: where code, messages and tests cite the docs pages
CITING = ("src", "tests", "bench", "pipeline", "docker", "templates")
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
SECTION = re.compile(r"docs/sagemaker-notes\.md §(\d+)")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the headings of ``page`` (Python-Markdown's toc slugify)."""
    slugify = pytest.importorskip("markdown.extensions.toc").slugify
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # a '#' in a code block is no heading
    return {slugify(title, "-") for title in re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)}


def _sources() -> dict[str, str]:
    """Relative path -> text of every file that may cite a page."""
    return {
        str(path.relative_to(ROOT)): path.read_text(errors="replace")
        for top in CITING
        for path in sorted((ROOT / top).rglob("*"))
        if path.suffix in {".py", ".md", ".sh", ".yml", ".yaml"} and "results" not in path.parts
    }


def _citations() -> list[tuple[str, str, str | None]]:
    return [
        (source, page, anchor or None) for source, text in _sources().items() for page, anchor in CITATION.findall(text)
    ]


def test_readme_stays_a_short_front_door():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move the detail into a docs/ page"


def test_citations_of_docs_pages_name_a_page_and_heading_that_exist():
    citations = _citations()
    assert citations, "no code cites a docs page"
    for source, page, anchor in citations:
        assert (DOCS / page).is_file(), f"{source} cites docs/{page}, which does not exist"
        if anchor:
            assert anchor in _anchors(DOCS / page), f"{source} cites docs/{page}#{anchor}: no such heading"


def test_sagemaker_notes_sections_cited_by_the_code_exist():
    notes = (DOCS / "sagemaker-notes.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", notes, flags=re.M))
    cited = {(source, number) for source, text in _sources().items() for number in SECTION.findall(text)}
    assert cited, "no code cites docs/sagemaker-notes.md §N"
    for source, number in sorted(cited):
        assert number in sections, f"{source} cites docs/sagemaker-notes.md §{number}: no such section"


def test_airflow_config_table_is_the_keys_table():
    """docs/airflow.md's config table lists exactly the keys of ``forecaster.orchestration.config.KEYS``."""
    text = (DOCS / "airflow.md").read_text()
    table = text[text.index("## Config") :].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == set(KEYS)


@pytest.mark.slow
def test_the_python_api_example_prints_what_the_page_shows(tmp_path):
    """The worked example of docs/python-api.md, run as written: its printed output once went stale."""
    import subprocess
    import sys

    text = (DOCS / "python-api.md").read_text()
    code, shown = re.search(r"```python\n(import pandas as pd\n.*?)```\n\n```\n(.*?)```", text, flags=re.S).groups()
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == shown
