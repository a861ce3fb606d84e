"""The docs stay true to the code: the params reference is generated from the schema."""

from __future__ import annotations

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
    assert not missing, f"add description= to these fields in src/quantpipe/params.py, then {REFRESH}: {missing}"

