"""The package is layered: a module imports modules of its own layer or below, never above; the imports form
no cycle; only the kind registry imports a module by name; the config layer, at the bottom, reads params.yaml
without loading a model runtime.

Imports are read statically from every module of the imported `quantpipe` package (function-level imports
included, `if TYPE_CHECKING:` blocks left out: they never run), so the test holds whichever tree is on the path.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import quantpipe

PACKAGE = Path(quantpipe.__file__).resolve().parent

# Each module of src/quantpipe in exactly one layer, by its own entry or its package's (`pkg.*`: the package and all
# in it, so that a new kind needs no edit here); any other new module must be placed.
LAYERS: dict[int, tuple[str, ...]] = {
    0: (  # the bottom: errors and the params schema (stdlib, pydantic and yaml only)
        "quantpipe",
        "quantpipe.errors",
        "quantpipe.config",
        "quantpipe.config.base",
        "quantpipe.config.constants",
        "quantpipe.config.sections",
        "quantpipe.config.search",
        "quantpipe.config.seq2seq",
        "quantpipe.config.students",
        "quantpipe.config.registry",
    ),
    1: (  # tooling: files, the stage runner, the machine, statistics, data, and the engines' model building
        "quantpipe.io",
        "quantpipe.cli",
        "quantpipe.environment",
        "quantpipe.statistics",
        "quantpipe.data",
        "quantpipe.export",
        "quantpipe.inference",
        "quantpipe.calibration",
        "quantpipe.ort_quantize",
        "quantpipe.memory",
        "quantpipe.training",
        "quantpipe.model_loading",
        "quantpipe.base_model",
        "quantpipe.distillation",
        "quantpipe.seq2seq",  # the generate task's tooling: data, fine-tuning, export with the cache, lean loop
        "quantpipe.seq2seq.data",
        "quantpipe.seq2seq.source_words",
        "quantpipe.seq2seq.training",
        "quantpipe.seq2seq.bert_decoder",
        "quantpipe.seq2seq.export",
        "quantpipe.seq2seq.graph",
        "quantpipe.seq2seq.quantize",
        "quantpipe.seq2seq.generation",
        "quantpipe.seq2seq.lean",
        "quantpipe.seq2seq.runtime",
        "quantpipe.seq2seq.quality",
    ),
    2: ("quantpipe.kinds.*",),  # the variant kinds: params, build step and runtime of each (a new kind: no edit)
    3: (  # measuring and reporting the pipeline's models
        "quantpipe.serving",
        "quantpipe.evaluation",
        "quantpipe.side_by_side",
        "quantpipe.sensitivity",
        "quantpipe.metrics",
        "quantpipe.analysis",
        "quantpipe.rendering",
        "quantpipe.seq2seq.compare",
        "quantpipe.shipping",
        "quantpipe.predict",
    ),
    4: ("quantpipe.search.*",),  # the search, built on all of it
}
PLACED = {entry: layer for layer, entries in LAYERS.items() for entry in entries}  # `pkg.*`: the package, all in it


def layer_of(module: str) -> int | None:
    """The layer of `module`: its own entry, else that of the package it is in (`pkg.*`), else None."""
    if module in PLACED:
        return PLACED[module]
    return next((PLACED[f"{p}.*"] for p in _packages_of(module) if f"{p}.*" in PLACED), None)


def _packages_of(module: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `a.b`, `a`]: the module itself (a package's `__init__`) and its parents, inner first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


REGISTRY = "quantpipe.config.registry"  # the one module that imports by name
DYNAMIC_IMPORTS = {"import_module", "__import__", "module_from_spec", "exec_module", "spec_from_file_location"}
HEAVY = ("torch", "onnxruntime", "openvino", "transformers", "optimum", "nncf")


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def runtime_nodes(tree: ast.AST):
    """Every node of `tree` but those inside `if TYPE_CHECKING:` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test):
                todo += child.orelse
            else:
                todo.append(child)


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `module` imports (`from a import b` is `a.b` where that is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {name for name in found if name.split(".")[0] == "quantpipe"}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports(module, path, set(files)) for module, path in files.items()}


def test_every_module_has_a_layer(graph):
    unplaced = sorted(module for module in graph if layer_of(module) is None)
    assert not unplaced, f"modules not in test_layers.LAYERS (place each in its layer): {unplaced}"
    absent = sorted(entry for entry in PLACED if entry.removesuffix(".*") not in graph)
    assert not absent, f"test_layers.LAYERS names modules that do not exist: {absent}"


def test_no_module_imports_a_higher_layer(graph):
    upward = [
        f"{module} (layer {layer_of(module)}) imports {name} (layer {layer_of(name)})"
        for module, names in sorted(graph.items())
        for name in sorted(names)
        if None not in (layer_of(module), layer_of(name)) and layer_of(name) > layer_of(module)
    ]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None: a depth-first search."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        while stack:
            name = next(stack[-1], None)
            if name is None:
                stack.pop()
                done.add(path.pop())
            elif name in path:
                return [*path[path.index(name) :], name]
            elif name in graph and name not in done:
                path.append(name)
                stack.append(iter(sorted(graph[name])))
    return None


def test_the_imports_form_no_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_only_the_registry_imports_by_name():
    found = []
    for module, path in module_files().items():
        if module == REGISTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name == "importlib"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("importlib"):
                names = [f"{node.module}.{alias.name}" for alias in node.names if alias.name in DYNAMIC_IMPORTS]
            elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_IMPORTS:
                names = [ast.unparse(node)]
            elif isinstance(node, ast.Name) and node.id == "__import__":
                names = ["__import__"]
            found += [f"{module}:{node.lineno}: {name}" for name in names]
    assert not found, f"imports by name outside {REGISTRY} (ask the registry, `kind_at`/`get_kind`): {found}"


def absolute_imports(path: Path) -> set[str]:
    """Every module a file imports by absolute name (`if TYPE_CHECKING:` blocks left out)."""
    names = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def test_the_config_layer_imports_only_stdlib_pydantic_and_yaml():
    allowed = {*sys.stdlib_module_names, "pydantic", "yaml", "quantpipe"}  # quantpipe: layer 0 only, as above
    found = [
        f"{module}: {name}"
        for module, path in module_files().items()
        if module.startswith("quantpipe.config")
        for name in sorted(absolute_imports(path))
        if name.split(".")[0] not in allowed
    ]
    assert not found, f"the config layer imports: {found}"


def test_reading_the_params_loads_no_model_runtime():
    """`import quantpipe.config` loads no other layer and no numpy; validating the shipped params.yaml (which
    imports the kinds it names, for their params) loads no ML runtime."""
    code = (
        "import sys\n"
        "import quantpipe.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('quantpipe') and not m.startswith('quantpipe.config')))\n"
        "print(sorted(m for m in ('numpy', *HEAVY) if m in sys.modules))\n"
        "quantpipe.config.load_params(sys.argv[1])\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n"
    ).replace("HEAVY", repr(HEAVY))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    params = PACKAGE.parents[1] / "params.yaml"
    done = subprocess.run(
        [sys.executable, "-c", code, str(params)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['quantpipe', 'quantpipe.errors']", "[]", "[]"]
