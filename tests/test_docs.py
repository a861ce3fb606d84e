"""The docs stay true to the code: the params reference is generated from the schema, links resolve."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFRESH = "run `python scripts/params_doc.py` to refresh"


@pytest.fixture(scope="module")
def params_doc() -> dict:
    return runpy.run_path(str(REPO / "scripts" / "params_doc.py"))  # not __main__: nothing is written


def test_params_reference_is_fresh(params_doc):
    committed = (REPO / "docs" / "params.md").read_text()
    assert committed == params_doc["render"](), f"docs/params.md is stale: {REFRESH}"


def test_every_param_has_a_description(params_doc):
    missing = params_doc["undocumented"]()
    assert not missing, f"add description= to these fields in src/quantpipe/config/, then {REFRESH}: {missing}"


def test_cpu_figures_hold_the_committed_run():
    """docs/cpus.md keeps one column per CPU kind; the column of the committed run's CPU is that run's."""
    import subprocess
    import sys

    script = str(REPO / "scripts" / "cpu_table.py")
    check = subprocess.run([sys.executable, script, "--check"], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines; move details to docs/"


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
)
def test_relative_links_resolve(page):
    path = REPO / page
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    missing = [t for t in local if t and not (path.parent / t).exists()]
    assert not missing, f"{page}: links to missing files {missing}"


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown page: lower case, punctuation dropped, spaces to `-`."""
    headings = re.findall(r"^#+\s+(.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
)
def test_link_anchors_name_a_heading(page):
    path = REPO / page
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    anchored = [t.split("#", 1) for t in targets if "#" in t and not re.match(r"[a-z]+:", t)]
    broken = [
        f"{file}#{anchor}"
        for file, anchor in anchored
        if anchor not in heading_anchors(path.parent / file if file else path)
    ]
    assert not broken, f"{page}: anchors that name no heading {broken}"
