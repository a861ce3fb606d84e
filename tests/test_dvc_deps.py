"""Each stage's `deps` in dvc.yaml, search/dvc.yaml and seq2seq/dvc.yaml list exactly the package modules its
code imports, so that a code change re-runs the stages it affects and no others. The lists are written by
scripts/dvc_deps.py (its docstring states the rule); these tests fail while one is stale."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFRESH = "run `python scripts/dvc_deps.py` to refresh"
LIBRARY_LINE = re.compile(r"^\s*- src/")


@pytest.fixture(scope="module")
def dvc_deps() -> dict:
    return runpy.run_path(str(REPO / "scripts" / "dvc_deps.py"))  # not __main__: nothing is written


def test_every_stage_lists_the_modules_its_code_imports(dvc_deps):
    stale = [stage for _, changed in dvc_deps["refreshed"]().values() for stage in changed]
    assert not stale, f"stages whose library deps are stale: {stale}; {REFRESH}"


def test_the_import_reader_sees_function_level_imports(dvc_deps):
    files = {
        f.relative_to(REPO / "src" / "quantpipe").as_posix()
        for f in dvc_deps["imported_files"](REPO / "stages" / "quantize.py")
        if f.is_relative_to(REPO / "src")
    }
    assert {"kinds/base.py", "kinds/__init__.py", "io.py", "data.py"} <= files  # data.py: inside a function
    assert "kinds/torch_dynamic.py" not in files  # kinds are imported by name, through the registry


def test_the_rewrite_changes_only_the_library_lines(dvc_deps):
    """Library lines shuffled and one left out of each list come back sorted, with their comments, in place."""
    params, kinds = dvc_deps["yaml"].safe_load((REPO / "params.yaml").read_text()), dvc_deps["registry"]()
    for name in dvc_deps["DVC_FILES"]:
        committed = (REPO / name).read_text()
        lines, runs, run = committed.splitlines(keepends=True), [], []
        for line in lines + [""]:
            if LIBRARY_LINE.match(line):
                run.append(line)
            elif run:
                runs.append(run)
                run = []
        spoiled = committed
        for run in runs:
            shuffled = run[::-1]
            shuffled.remove(next(line for line in run if "#" not in line))
            spoiled = spoiled.replace("".join(run), "".join(shuffled), 1)
        assert spoiled != committed
        assert dvc_deps["rewrite"](spoiled, name, params, kinds)[0] == committed, name


def test_dvc_resolves_every_library_dep_to_a_module():
    """`${item.kind}` lines name a kind's module for each instance, as dvc interpolates them."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        missing = {
            s.addressing: dep.def_path
            for s in repo.index.stages
            for dep in s.deps
            if dep.def_path.startswith("src/") and not (REPO / dep.def_path).is_file()
        }
    assert not missing, f"library deps that are not files: {missing}"
