"""What the ONNX Runtime int8 kinds `dynamic` and `static` share: params, build (quantization.py), runtime."""

from __future__ import annotations

from pathlib import Path

from quantpipe.config.sections import EvaluateParams
from quantpipe.environment import cpu_info
from quantpipe.kinds.base import BuildInputs, Kind
from quantpipe.kinds.onnx import load_onnx
from quantpipe.quantization import OrtQuantParams, quantize_variant, resolve_preset


class OrtInt8Kind(Kind):
    """An ONNX Runtime int8 model; `dynamic` and `static` differ in their params' `kind` only."""

    params = OrtQuantParams
    sensitivity = True
    excludable_parts = True

    def build(self, name: str, variant: OrtQuantParams, inputs: BuildInputs, out_dir: Path) -> dict:
        preset = resolve_preset(name, variant.preset, cpu_info())
        resolved = variant.model_copy(update={"preset": preset})
        quantize_variant(name, resolved, inputs.onnx, inputs.calibration, out_dir)
        return {"preset": preset}

    def load(self, model_dir: Path, variant: OrtQuantParams, cfg: EvaluateParams):
        return load_onnx(model_dir, variant, cfg)
