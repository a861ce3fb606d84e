"""The registry of variant kinds. A kind is one module exposing `KIND` (a `quantpipe.kinds.base.Kind`): its
typed params, its build step (the quantize stage) and its runtime (evaluate, side_by_side). Adding a kind is
one module plus one line here; see docs/extending.md."""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import ValidationError

from quantpipe.kinds.base import Kind
from quantpipe.params import BASELINES, NestedParamError, Params, VariantParams, first_error, one_line

# kind name -> module exposing KIND; a built-in kind's module is named after it (dvc.yaml deps rely on that)
KINDS: dict[str, str] = {
    "pytorch": "quantpipe.kinds.pytorch",
    "onnx": "quantpipe.kinds.onnx",
    "dynamic": "quantpipe.kinds.dynamic",
    "static": "quantpipe.kinds.static",
    "torch_dynamic": "quantpipe.kinds.torch_dynamic",
    "openvino": "quantpipe.kinds.openvino",
}


def get_kind(name: str) -> Kind:
    """The registered kind called `name` (its module is imported on first use)."""
    return importlib.import_module(KINDS[name]).KIND


def variant_params(name: str, raw: dict) -> VariantParams:
    """`variants.<name>` validated by its kind's params; problems become one `NestedParamError` line."""
    kind = raw.get("kind")
    buildable = [k for k in KINDS if not get_kind(k).baseline]
    if kind not in buildable:
        got = "missing" if kind is None else f"{kind!r} is a baseline's kind" if kind in KINDS else f"unknown {kind!r}"
        raise NestedParamError(f"{name}.kind: {got} (variant kinds: {', '.join(buildable)})")
    params = get_kind(kind).params
    try:
        return params.model_validate(raw)
    except ValidationError as exc:
        sep = "." if first_error(exc)["loc"] else ": "
        raise NestedParamError(f"{name}{sep}{one_line(exc, params)}") from None


def pipeline_models(
    params: Params, base: Path, onnx: Path, quantized: Path
) -> dict[str, tuple[Kind, VariantParams, Path]]:
    """Every model the pipeline evaluates, name -> (kind, params, model directory): the baselines (their
    models come from the base_model and export stages), then the variants (the quantize stage's outputs)."""
    dirs = {"pytorch": Path(base), "onnx": Path(onnx)}
    models = {}
    for name, kind_name in BASELINES.items():
        kind = get_kind(kind_name)
        models[name] = (kind, kind.params(kind=kind_name), dirs[kind_name])
    for name, variant in params.variants.items():
        models[name] = (get_kind(variant.kind), variant, Path(quantized) / name)
    return models
