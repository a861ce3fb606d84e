"""Each stage's `deps` in dvc.yaml list exactly the package modules its code imports, so that a code change
re-runs the stages it affects and no others.

The imports are read statically (function-level imports included) from the stage script, and, for a stage that
builds or runs a model, from the module of that model's kind (the registry imports it by name). A foreach
stage declares one deps list for all its instances: each instance must list everything its code imports, and
the list may hold nothing that no instance imports. Not deps, by design: the config package (params are tracked
by value, in `params:`), io.py (atomic writes), cli.py (error reporting) and errors.py (messages): they change
no output.
"""

from __future__ import annotations

import ast
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

from quantpipe.config import load_params
from quantpipe.config.constants import BASELINES
from quantpipe.config.registry import KINDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src"
NOT_DEPS = {
    "src/quantpipe/__init__.py",
    *(f"src/quantpipe/{m}.py" for m in ("io", "cli", "errors")),
    *(str(p.relative_to(REPO)) for p in (PACKAGE / "quantpipe" / "config").glob("*.py")),
}


def module_file(name: str) -> Path | None:
    base = PACKAGE.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_files(path: Path) -> set[Path]:
    """The quantpipe modules `path` imports, directly or through each other (not through the modules in
    NOT_DEPS: what the config package imports to validate the variants changes no output)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if str(current.relative_to(REPO)) in NOT_DEPS:
            continue
        tree = ast.parse(current.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                found = module_file(name) if name.split(".")[0] == "quantpipe" else None
                parents = [module_file(".".join(name.split(".")[:i])) for i in range(2, name.count(".") + 1)]
                for file in [found, *parents]:
                    if file is not None and file not in seen:
                        seen.add(file)
                        todo.append(file)
    return seen


def kind_module(kind: str) -> Path:
    return module_file(KINDS[kind])


def stage_models(addressing: str, cmd: str, params) -> list[str]:
    """The kinds whose modules the stage loads by name."""
    args = shlex.split(cmd)
    if "--name" in args and ("stages/quantize.py" in args or "stages/evaluate.py" in args):
        name = args[args.index("--name") + 1]
        return [BASELINES.get(name) or params.variants[name].kind]
    if "stages/search.py" in args:  # a trial may be a variant of any kind (search/dvc.yaml)
        return list(KINDS)
    if "stages/side_by_side.py" in args:
        return [*BASELINES.values(), *(v.kind for v in params.variants.values())]
    return []


def listed_modules(stage) -> set[str]:
    listed = set()
    for dep in stage.deps:
        path = REPO / dep.def_path
        if dep.def_path.startswith("src/") and path.is_dir():
            listed |= {str(p.relative_to(REPO)) for p in path.rglob("*.py")}
        elif dep.def_path.startswith("src/"):
            listed.add(dep.def_path)
    return listed


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return [(s.addressing, s.cmd, listed_modules(s)) for s in repo.index.stages]


def test_each_stage_lists_what_it_imports_and_nothing_else(stages):
    params = load_params(REPO / "params.yaml")
    needed_by_group: dict[str, set[str]] = defaultdict(set)
    listed_by_group: dict[str, set[str]] = defaultdict(set)
    missing = {}
    for addressing, cmd, listed in stages:
        script = REPO / next(a for a in shlex.split(cmd) if a.startswith("stages/"))
        files = imported_files(script)
        for kind in stage_models(addressing, cmd, params):
            files |= {kind_module(kind), *imported_files(kind_module(kind))}
        needed = {str(f.relative_to(REPO)) for f in files} - NOT_DEPS
        group = addressing.split("@")[0]
        needed_by_group[group] |= needed
        listed_by_group[group] |= listed
        if needed - listed:
            missing[addressing] = sorted(needed - listed)
    assert not missing, f"stages that import modules their deps do not list: {missing}"
    extra = {g: sorted(listed_by_group[g] - needed_by_group[g]) for g in listed_by_group}
    assert not {g: e for g, e in extra.items() if e}, f"deps that no instance of the stage imports: {extra}"


def test_the_import_reader_sees_function_level_imports():
    files = {f.name for f in imported_files(REPO / "stages" / "quantize.py")}
    assert {"base.py", "registry.py", "io.py"} <= files
    assert "torch_dynamic.py" not in files  # kinds are imported by name, through the registry
