"""The variant kinds, one module each exposing `KIND` (a `quantpipe.kinds.base.Kind`); the registry that names
them is `quantpipe.config.registry`. Adding a kind is one module plus one line there; see docs/extending.md."""

from __future__ import annotations

from pathlib import Path

from quantpipe.config import Params
from quantpipe.config.constants import BASELINES, SEQ2SEQ_BASELINES
from quantpipe.config.registry import get_kind
from quantpipe.config.sections import VariantParams
from quantpipe.config.seq2seq import GenerateVariantParams
from quantpipe.config.students import BASE_MODEL
from quantpipe.kinds.base import BuildInputs, Kind


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


def model_dirs(model: str, base: Path, onnx: Path) -> tuple[Path, Path]:
    """The PyTorch and ONNX folders of the model a variant names: the base model's own, or a student's beside them
    (models/pytorch/<student>, models/onnx/<student>)."""
    if model == BASE_MODEL:
        return Path(base), Path(onnx)
    return Path(base).parent / model, Path(onnx).parent / model


def build_inputs(params: Params, kind: Kind, variant: VariantParams, dirs: BuildInputs, scratch: Path) -> BuildInputs:
    """What the variant's build reads: `dirs` (the base model's folders, the calibrate stages' outputs, the data)
    with the folders of the model the variant names. The calibrate stages run on the base model's graph; a
    calibrated kind's variant of a student gets its calibration computed here, on the student's graph, in
    `scratch`."""
    from quantpipe.calibration import calibrate

    pytorch, onnx = model_dirs(variant.model, dirs.base, dirs.onnx)
    calibration = dirs.calibration
    if variant.model != BASE_MODEL and kind.calibrated:
        calibration = Path(scratch)
        name = variant.calibration
        (calibration / name).mkdir(parents=True, exist_ok=True)
        calibrate(onnx, dirs.train_texts(), params.calibrations[name], calibration / name)
    return BuildInputs(params, pytorch, onnx, calibration, dirs.prepared)
