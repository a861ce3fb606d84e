"""Kind `openvino`: the model converted to OpenVINO IR, in fp32 or quantized to int8 by NNCF
(`nncf.quantize` with `ModelType.TRANSFORMER` on a calibration's sample), run by OpenVINO's CPU plugin.
OpenVINO and NNCF are the optional extra `quantpipe[openvino]`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE
from quantpipe.kinds.base import BuildInputs, Kind, copy_tokenizer
from quantpipe.params import EvaluateParams, VariantParams

logger = logging.getLogger(__name__)
IR_FILE = "model.xml"  # its weights: model.bin beside it


class OpenVinoParams(VariantParams):
    """An OpenVINO model: the fp32 IR, or NNCF int8 with what NNCF's users tune."""

    kind: Literal["openvino"] = Field(description="`openvino`: OpenVINO IR (fp32 or NNCF int8), run by OpenVINO")
    weights: Literal["fp32", "int8"] = Field("int8", description="`fp32`: the converted IR; `int8`: `nncf.quantize`")
    calibration: str | None = Field(
        None, description="name in `calibrations` whose sample (texts, seed, max_length) NNCF runs; int8 only"
    )
    preset: Literal["performance", "mixed"] = Field(
        "performance",
        description="NNCF `QuantizationPreset`: symmetric weights and activations, or asymmetric activations",
    )
    smooth_quant_alpha: float | None = Field(
        None,
        description="SmoothQuant alpha of the MatMuls (`AdvancedSmoothQuantParameters(matmul=...)`); null: "
        "NNCF's default for transformers; -1: SmoothQuant off",
    )
    ignored_nodes: list[str] = Field(default_factory=list, description="node names NNCF leaves in fp32")
    ignored_types: list[str] = Field(default_factory=list, description="operation types NNCF leaves in fp32")
    inference_precision: Literal["f32", "bf16"] = Field(
        "f32",
        description="`INFERENCE_PRECISION_HINT`: the CPU plugin computes in bf16 by default where the CPU has "
        "AVX512_BF16 or AMX; `f32` keeps fp32 arithmetic, `bf16` is a variant of its own",
    )
    streams: int = Field(1, gt=0, description="`NUM_STREAMS` (parallel inference requests; 1 for one caller)")

    @model_validator(mode="after")
    def _int8_options(self) -> OpenVinoParams:
        if self.weights == "int8" and not self.calibration:
            raise ValueError("an int8 openvino variant needs `calibration: <name in calibrations>` (NNCF's sample)")
        tuned = self.calibration or self.ignored_nodes or self.ignored_types or self.smooth_quant_alpha is not None
        if self.weights == "fp32" and tuned:
            raise ValueError("calibration, smooth_quant_alpha and ignored_* apply to weights: int8 only")
        return self

    def check_references(self, name: str, params) -> None:
        if self.calibration and self.calibration not in params.calibrations:
            raise ValueError(
                f"variants.{name}.calibration: '{self.calibration}' is not one of calibrations "
                f"{sorted(params.calibrations)}"
            )


def nncf_quantize(name: str, model, texts: list[str], tokenizer, max_length: int, variant: OpenVinoParams):
    """`nncf.quantize` on one text per item (each padded to its own length: `subset_size` counts items), with
    the variant's options."""
    import nncf

    advanced = {}
    if variant.smooth_quant_alpha is not None:
        advanced["smooth_quant_alphas"] = nncf.AdvancedSmoothQuantParameters(matmul=variant.smooth_quant_alpha)
    ignored = nncf.IgnoredScope(names=variant.ignored_nodes, types=variant.ignored_types, validate=True)
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(texts, lambda text: tokenizer.pad(tokenizer.encode([text], max_length))),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=getattr(nncf.QuantizationPreset, variant.preset.upper()),
            subset_size=len(texts),
            ignored_scope=ignored,
            advanced_parameters=nncf.AdvancedQuantizationParameters(**advanced),
        )
    except nncf.ValidationError as exc:  # e.g. an ignored node that is not in the graph
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise QuantpipeError(f"variants.{name}.ignored_*: NNCF: {first}") from None


class OpenVinoClassifier:
    """A model compiled for OpenVINO's CPU plugin, with one infer request."""

    def __init__(self, model_dir: Path, variant: OpenVinoParams, threads: int):
        import openvino as ov

        path = Path(model_dir) / IR_FILE
        if not path.is_file():
            raise QuantpipeError(f"{path}: OpenVINO model not found (run the quantize stage)")
        config = {
            "INFERENCE_PRECISION_HINT": variant.inference_precision,
            "NUM_STREAMS": variant.streams,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = {name for port in self.compiled.inputs for name in port.get_names()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}
        return np.array(self.request.infer(feed)[self.compiled.output(0)])


class OpenVinoKind(Kind):
    name = "openvino"
    params = OpenVinoParams
    weight_files = ("*.xml", "*.bin")
    requires = ("openvino", "nncf")
    extra = "openvino"

    def build(self, name: str, variant: OpenVinoParams, inputs: BuildInputs, out_dir: Path) -> dict:
        import openvino as ov

        from quantpipe.calibration import calibration_sample
        from quantpipe.inference import Tokenizer

        source = Path(inputs.onnx) / MODEL_FILE
        if not source.is_file():
            raise QuantpipeError(f"{source}: ONNX model not found (run the export stage)")
        model = ov.convert_model(str(source))
        if variant.weights == "int8":
            cfg = inputs.params.calibrations[variant.calibration]
            texts = calibration_sample(inputs.train_texts(), cfg)
            model = nncf_quantize(name, model, texts, Tokenizer(inputs.base), cfg.max_length, variant)
        ov.save_model(model, str(Path(out_dir) / IR_FILE), compress_to_fp16=False)
        copy_tokenizer(inputs.onnx, out_dir)
        # the CPU plugin falls back to f32 without a word where the CPU has no bf16: record what it computes in
        compiled = OpenVinoClassifier(out_dir, variant, inputs.params.evaluate.threads).compiled
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if precision != variant.inference_precision:
            logger.warning(
                "variants.%s.inference_precision: %s asked, the CPU plugin computes in %s on this CPU",
                name,
                variant.inference_precision,
                precision,
            )
        return {"inference_precision": precision}

    def load(self, model_dir: Path, variant: OpenVinoParams, cfg: EvaluateParams) -> OpenVinoClassifier:
        return OpenVinoClassifier(model_dir, variant, cfg.threads)


KIND = OpenVinoKind()
