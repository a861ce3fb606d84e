"""The registry of variant kinds. A kind is one module exposing `KIND` (a `quantpipe.kinds.base.Kind`): its
typed params, its build step (the quantize stage) and its runtime (evaluate, side_by_side). The registry names
the modules and imports one when its kind is first asked for, so that reading params.yaml imports no kind
it does not name. Adding a kind is one module plus one line here; see docs/extending.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pydantic import ValidationError

from quantpipe.config.base import NestedParamError, first_error, one_line

if TYPE_CHECKING:
    from quantpipe.config.sections import VariantParams
    from quantpipe.kinds.base import Kind

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


def variant_params(name: str, raw: dict) -> VariantParams:
    """`variants.<name>` validated by its kind's params; problems become one `NestedParamError` line."""
    kind, names = raw.get("kind"), list(KINDS)  # `in names`, not `in KINDS`: `kind` may be any YAML value
    if kind not in names or get_kind(kind).baseline:
        buildable = [k for k in names if not get_kind(k).baseline]
        got = "missing" if kind is None else f"{kind!r} is a baseline's kind" if kind in names else f"unknown {kind!r}"
        raise NestedParamError(f"{name}.kind: {got} (variant kinds: {', '.join(buildable)})")
    params = get_kind(kind).params
    try:
        return params.model_validate(raw)
    except ValidationError as exc:
        sep = "." if first_error(exc)["loc"] else ": "
        raise NestedParamError(f"{name}{sep}{one_line(exc, params)}") from None
