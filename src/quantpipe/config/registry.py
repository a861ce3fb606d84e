"""The registry of variant kinds. A kind is one module exposing `KIND` (a `quantpipe.kinds.base.Kind`): the
tasks it serves (classify: a batch in, logits out; generate: texts in, greedy token ids out) and, for each, its
typed params, its build step (the quantize stages) and its runtime (evaluate, side_by_side; seq2seq_evaluate, seq2seq_compare).
The registry names the modules and imports one when its kind is first asked for, so that reading params.yaml
imports no kind it does not name. Adding a kind is one module plus one line here; see docs/extending.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pydantic import ValidationError

from quantpipe.config.base import NestedParamError, first_error, one_line

if TYPE_CHECKING:
    from quantpipe.config.base import Section
    from quantpipe.kinds.base import Kind

CLASSIFY, GENERATE = "classify", "generate"  # the tasks: the default pipeline's, the seq2seq pipeline's
KINDS_LABEL = {CLASSIFY: "variant kinds", GENERATE: "kinds that serve generation"}  # how errors list a task's kinds
DEFAULT_KIND = {GENERATE: "dynamic"}  # a seq2seq variant without `kind` is ONNX Runtime dynamic int8
# kind name -> module exposing KIND; a built-in kind's module is named after it (dvc.yaml deps rely on that)
KINDS: dict[str, str] = {
    "pytorch": "quantpipe.kinds.pytorch",
    "onnx": "quantpipe.kinds.onnx",
    "dynamic": "quantpipe.kinds.dynamic",
    "static": "quantpipe.kinds.static",
    "torch_dynamic": "quantpipe.kinds.torch_dynamic",
    "openvino": "quantpipe.kinds.openvino",
}


def kind_at(module: str) -> Kind:
    """The `KIND` the module `module` exposes (imported on first use): a registered kind's, or one a process
    was handed by module name (the serving process)."""
    return importlib.import_module(module).KIND


def get_kind(name: str) -> Kind:
    """The registered kind called `name`."""
    return kind_at(KINDS[name])


def variant_params(name: str, raw: dict, task: str = CLASSIFY) -> Section:
    """A variant of `task` (`variants.<name>`, `seq2seq.variants.<name>`) validated by its kind's params for that
    task; problems become one `NestedParamError` line naming the key."""
    if not isinstance(raw, dict):
        raise NestedParamError(f"{name}: not a mapping")
    kind, names = raw.get("kind", DEFAULT_KIND.get(task)), list(KINDS)  # `in names`: `kind` may be any YAML value
    if kind not in names or task not in get_kind(kind).tasks or get_kind(kind).baseline:
        serving = [k for k in names if task in get_kind(k).tasks and not get_kind(k).baseline]
        if kind is None:
            got = "missing"
        elif kind in names:
            got = f"{kind!r} is a baseline's kind" if get_kind(kind).baseline else f"{kind!r} does not serve {task}"
        else:
            got = f"unknown {kind!r}"
        raise NestedParamError(f"{name}.kind: {got} ({KINDS_LABEL[task]}: {', '.join(serving)})")
    params = get_kind(kind).tasks[task]
    try:
        return params.model_validate({**raw, "kind": kind})
    except ValidationError as exc:
        sep = "." if first_error(exc)["loc"] else ": "
        raise NestedParamError(f"{name}{sep}{one_line(exc, params)}") from None
