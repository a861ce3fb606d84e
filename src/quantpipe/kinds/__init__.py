"""The variant kinds, one module each exposing `KIND` (a `quantpipe.kinds.base.Kind`); the registry that names
them is `quantpipe.config.registry`. Adding a kind is one module plus one line there; see docs/extending.md."""

from __future__ import annotations

from pathlib import Path

from quantpipe.config import Params
from quantpipe.config.constants import BASELINES, SEQ2SEQ_BASELINES
from quantpipe.config.registry import get_kind
from quantpipe.config.sections import VariantParams
from quantpipe.config.seq2seq import GenerateVariantParams
from quantpipe.kinds.base import Kind


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


def seq2seq_models(
    params: Params, base: Path, onnx: Path, quantized: Path
) -> dict[str, tuple[Kind, GenerateVariantParams, Path]]:
    """Every model the seq2seq pipeline measures (task generate), name -> (kind, params, model directory): the
    baselines (the fp32 model of seq2seq_model with and without its cache, the export of seq2seq_export), then
    the variants (the seq2seq_quantize stages' outputs)."""
    dirs = {"pytorch": Path(base), "onnx": Path(onnx)}
    models = {}
    for name, (kind_name, overrides) in SEQ2SEQ_BASELINES.items():
        kind = get_kind(kind_name)
        models[name] = (kind, kind.generate_params(kind=kind_name, **overrides), dirs[kind_name])
    for name, variant in params.seq2seq.variants.items():
        models[name] = (get_kind(variant.kind), variant, Path(quantized) / name)
    return models
