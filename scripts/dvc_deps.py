"""Write the library part of every stage's `deps` in dvc.yaml, search/dvc.yaml and seq2seq/dvc.yaml: the
package modules (src/quantpipe/) the stage's code imports, so that a code change re-runs the stages it affects
and no others.

The rule:

- A stage's code is its script (the `stages/<x>.py` of its `cmd`) and every quantpipe module that script
  imports, directly or through each other: `import` statements read with `ast`, anywhere in a module (imports
  inside functions too; not those under `if TYPE_CHECKING:`, which never run), and the `__init__.py` of each
  package on the way. No module is left out because of its layer: the params schema (`params:` tracks the
  values, not the code that reads, checks and fills in their defaults), io (it writes the outputs' bytes) and
  cli (the default paths a stage reads and writes) are deps like any other.
- Two modules are not deps, because no output can depend on them: `quantpipe.errors` (the exception type: a
  stage that raises it writes nothing) and the package's own `__init__.py` (its docstring and version string,
  which no stage reads). Their own imports are still followed.
- The registry imports a kind's module by name (`importlib`), which `ast` cannot see. A stage that builds or
  runs models through it (MODEL_STAGES) also depends on the modules of those models' kinds, and on what those
  import: the instance's own kind for quantize and evaluate (a foreach item's `kind`), every registered kind
  for side_by_side (every model), search (a trial may be of any kind) and the seq2seq stages (a seq2seq
  variant may leave its `kind` to the default). Where every kind's module is named
  after it, the instance's own kind is the one line `src/quantpipe/kinds/${item.kind}.py`. Validating
  params.yaml also imports every kind's module (each variant is checked by its kind's params model); that
  decides whether params.yaml is accepted, not what a stage writes, and is not followed.
- A foreach stage declares one list for all its instances: the union of what each instance needs.

Only the `src/` lines of a `deps` list are rewritten, sorted, where the first of them stood (after the stage
script if there was none); a kept line keeps its comment, and nothing else in the file changes.

    python scripts/dvc_deps.py           # rewrite the three dvc.yaml files
    python scripts/dvc_deps.py --check   # exit 1 naming the stages whose lists are stale (tests/test_dvc_deps.py)

Run it after changing an import or adding a kind or a stage. It reads code and YAML only (no quantpipe import).
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PACKAGE = "quantpipe"
DVC_FILES = ("dvc.yaml", "search/dvc.yaml", "seq2seq/dvc.yaml")
NOT_DEPS = {PACKAGE, f"{PACKAGE}.errors"}
# stage script -> the kinds whose models it builds or runs through the registry: "item" the foreach item's own
# kind, "all" every registered kind
MODEL_STAGES = {
    "stages/quantize.py": "item",
    "stages/evaluate.py": "item",
    "stages/side_by_side.py": "all",
    "stages/ship.py": "all",  # the answer may be of any kind (its loading code and precision)
    "stages/search.py": "all",
    "stages/seq2seq_quantize.py": "all",  # a seq2seq variant may leave `kind` to its default
    "stages/seq2seq_evaluate.py": "all",
    "stages/seq2seq_compare.py": "all",
}
DEP_LINE = re.compile(r"^\s*- (?P<path>\S+)(?P<comment>\s+#.*)?$")


def module_file(name: str) -> Path | None:
    """The file of module `name` under src/, if it is one of the package's."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(nodes):
    """The Import and ImportFrom nodes among `nodes` and theirs, but those under `if TYPE_CHECKING:`."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _runtime_imports(node.orelse)
        else:
            yield from _runtime_imports(ast.iter_child_nodes(node))


def direct_imports(path: Path) -> set[Path]:
    """The package's modules `path` imports (a `from m import x` names m, and m.x where x is a module), with
    the `__init__.py` of every package on the way."""
    names = []
    for node in _runtime_imports(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise SystemExit(f"{path.relative_to(REPO)}:{node.lineno}: a relative import (write it absolute)")
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        else:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == PACKAGE:
            found |= {f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))}
    return found


def imported_files(*paths: Path) -> set[Path]:
    """`paths` and every package module they import, directly or through each other."""
    seen = set(paths)
    todo = list(paths)
    while todo:
        for file in direct_imports(todo.pop()) - seen:
            seen.add(file)
            todo.append(file)
    return seen


def registry() -> dict[str, str]:
    """The registry's `KINDS` (kind name -> module), read from whichever package module assigns it."""
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            if any(isinstance(t, ast.Name) and t.id == "KINDS" for t in targets):
                return ast.literal_eval(node.value)
    raise SystemExit(f"no module under {SRC.relative_to(REPO)} assigns KINDS (the registry of kinds)")


def dep_path(file: Path) -> str:
    return file.relative_to(REPO).as_posix()


def lookup(params: dict, reference: str):
    """`${a.b}` of a foreach, from params.yaml."""
    value = params
    for key in reference.removeprefix("${").removesuffix("}").split("."):
        value = value[key]
    return value


def library_deps(stage: dict, params: dict, kinds: dict[str, str]) -> list[str]:
    """The sorted `src/` deps of one dvc.yaml stage (a foreach stage: of its `do`, for all its instances)."""
    body = stage.get("do", stage)
    script = next(arg for arg in shlex.split(body["cmd"]) if arg.startswith("stages/"))
    deps = imported_files(REPO / script)
    mode = MODEL_STAGES.get(script)
    template = None
    if mode == "all":
        deps |= imported_files(*(module_file(m) for m in kinds.values()))
    elif mode == "item":
        items = stage["foreach"]
        items = lookup(params, items) if isinstance(items, str) else items
        prefixes = {module.removesuffix(kind) for kind, module in kinds.items()}
        own = len(prefixes) == 1 and all(module.endswith(f".{kind}") for kind, module in kinds.items())
        for item in items.values() if isinstance(items, dict) else items:
            kind_file = module_file(kinds[item["kind"]])
            deps |= imported_files(kind_file) - ({kind_file} if own else set())
        if own:
            template = dep_path(module_file(prefixes.pop().rstrip(".")).parent) + "/${item.kind}.py"
    paths = {dep_path(f) for f in deps if f.is_relative_to(SRC) and module_name(f) not in NOT_DEPS}
    return sorted(paths | ({template} if template else set()), key=lambda p: (p.count("/"), p))


def rewrite(text: str, dvc_file: str, params: dict, kinds: dict[str, str]) -> tuple[str, list[str]]:
    """`text` (a dvc.yaml) with each stage's `src/` deps written anew, and the names of the stages that changed."""
    stages = yaml.safe_load(text)["stages"]
    root = yaml.compose(text)
    lines = text.splitlines(keepends=True)
    edits = []  # (first line, lines replaced, new lines)
    stale = []
    for key, node in next(v for k, v in root.value if k.value == "stages").value:
        body = {k.value: v for k, v in node.value}
        body = {k.value: v for k, v in body["do"].value} if "do" in body else body
        items = body["deps"].value
        library = [i for i in items if isinstance(i, yaml.ScalarNode) and i.value.startswith("src/")]
        old = [DEP_LINE.match(lines[i.start_mark.line].rstrip("\n")) for i in library]
        comments = {m["path"]: m["comment"] or "" for m in old}
        new = library_deps(stages[key.value], params, kinds)
        if [m["path"] for m in old] == new:
            continue
        stale.append(f"{dvc_file}: {key.value}")
        anchor = library[0] if library else items[0]
        first = anchor.start_mark.line + (0 if library else 1)
        indent = lines[anchor.start_mark.line][: anchor.start_mark.column]
        edits.append(
            (first, [i.start_mark.line for i in library], [f"{indent}{p}{comments.get(p, '')}\n" for p in new])
        )
    for first, replaced, new in sorted(edits, reverse=True):
        for line in sorted(replaced, reverse=True):
            del lines[line]
        lines[first:first] = new
    return "".join(lines), stale


def refreshed() -> dict[Path, tuple[str, list[str]]]:
    """Each dvc.yaml -> its text with every stage's `src/` deps written anew, and the stages that changed."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    kinds = registry()
    return {REPO / f: rewrite((REPO / f).read_text(), f, params, kinds) for f in DVC_FILES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the stale stages")
    args = parser.parse_args(argv)
    stale = []
    for path, (text, changed) in refreshed().items():
        stale += changed
        if changed and not args.check:
            path.write_text(text)
    for name in stale:
        print(f"{'stale' if args.check else 'rewritten'}: {name}", file=sys.stderr if args.check else sys.stdout)
    if args.check and stale:
        print("run `python scripts/dvc_deps.py` to refresh", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
