"""Kind `openvino`: the model converted to OpenVINO IR, in fp32 or quantized to int8 by NNCF
(`nncf.quantize` with `ModelType.TRANSFORMER` on a calibration's sample), run by OpenVINO's CPU plugin; a
seq2seq export's files converted alike (their weights optionally compressed by NNCF) and served by the lean
loop. OpenVINO and NNCF are the optional extra `quantpipe[openvino]`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from quantpipe.config.sections import EvaluateParams, VariantParams, check_calibration
from quantpipe.config.seq2seq import GenerateServing, LeanGenerateParams
from quantpipe.environment import has_bf16
from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE
from quantpipe.inference import Concurrent
from quantpipe.io import check_model_dir, loading
from quantpipe.kinds.base import BuildInputs, Kind, copy_files, copy_tokenizer

IR_FILE = "openvino_model.xml"  # its weights: openvino_model.bin beside it (optimum-intel's names)


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
    inference_precision: Literal["default", "f32", "bf16"] = Field(
        "default",
        description="`INFERENCE_PRECISION_HINT`: `default` sets none, as OpenVINO's users do (the CPU plugin then "
        "computes in bf16 where the CPU has AVX512_BF16 or AMX, else f32; what it chose is recorded); `f32` "
        "forces fp32 arithmetic; `bf16` forces bf16 (skipped, with the reason in the report, on a CPU without it)",
    )

    @property
    def needs_bf16(self) -> bool:
        """Whether it asks the CPU for bf16 arithmetic (`OpenVinoKind.skip_reason`)."""
        return self.inference_precision == "bf16"

    @model_validator(mode="after")
    def _int8_options(self) -> OpenVinoParams:
        if self.weights == "int8" and not self.calibration:
            raise ValueError("an int8 openvino variant needs `calibration: <name in calibrations>` (NNCF's sample)")
        tuned = self.calibration or self.ignored_nodes or self.ignored_types or self.smooth_quant_alpha is not None
        if self.weights == "fp32" and tuned:
            raise ValueError("calibration, smooth_quant_alpha and ignored_* apply to weights: int8 only")
        return self

    def check_references(self, name: str, params) -> None:
        check_calibration(f"variants.{name}.calibration", self.calibration, params)


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


def compile_config(variant: OpenVinoParams, threads: int) -> dict:
    """The CPU plugin's properties for the variant: one stream of `threads` threads with OpenVINO's default
    hints, or the THROUGHPUT hint with `streams` streams; a precision hint only where the variant forces one."""
    config = {"INFERENCE_NUM_THREADS": threads}
    if variant.streams > 1:
        config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": variant.streams}
    if variant.inference_precision != "default":
        config["INFERENCE_PRECISION_HINT"] = variant.inference_precision
    return config


class OpenVinoClassifier(Concurrent):
    """A model compiled for OpenVINO's CPU plugin: one infer request for one caller, and an `AsyncInferQueue`
    of `streams` requests for many batches at once."""

    def __init__(self, model_dir: Path, variant: OpenVinoParams, threads: int):
        import openvino as ov

        path = Path(model_dir) / IR_FILE
        if not path.is_file():
            raise QuantpipeError(f"{path}: OpenVINO model not found (run the quantize stage)")
        with loading(path, "OpenVINO model", (RuntimeError,)):  # the IR and its weights (.bin)
            self.compiled = ov.Core().compile_model(str(path), "CPU", compile_config(variant, threads))
        self.request = self.compiled.create_infer_request()
        self.streams = variant.streams
        self.queue = ov.AsyncInferQueue(self.compiled, self.streams) if self.streams > 1 else None
        self.input_names = {name for port in self.compiled.inputs for name in port.get_names()}

    def _feed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.request.infer(self._feed(batch))[self.compiled.output(0)])

    def map(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        if self.queue is None:
            return [self(batch) for batch in batches]
        out: list[np.ndarray] = [None] * len(batches)

        def done(request, index: int) -> None:
            out[index] = np.array(request.get_output_tensor(0).data)  # a copy: the request's buffer is reused

        self.queue.set_callback(done)
        for index, batch in enumerate(batches):
            self.queue.start_async(self._feed(batch), index)
        self.queue.wait_all()
        return out

    def computed_in(self) -> dict:
        """What the plugin resolved: the precision it computes in, its hint and its streams."""
        return {
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")),
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
        }


class OpenVinoGenerateParams(LeanGenerateParams):
    """A seq2seq export converted to OpenVINO IR and served by OpenVINO's CPU plugin under the lean loop."""

    kind: Literal["openvino"] = Field(description="OpenVINO")
    precision: Literal["default", "f32", "bf16"] = Field(
        "default",
        description="INFERENCE_PRECISION_HINT: `default` leaves OpenVINO's choice (bf16 on CPUs with AVX512_BF16 or"
        " AMX, else f32)",
    )
    weights: Literal["fp32", "int8"] = Field(
        "fp32", description="`int8`: NNCF's data-free weight compression (`nncf.compress_weights`, INT8_ASYM)"
    )
    parts: list[Literal["encoder", "decoder"]] = Field(
        default_factory=lambda: ["encoder", "decoder"], min_length=1, description="files whose weights are compressed"
    )

    @property
    def needs_bf16(self) -> bool:
        """Whether it asks the CPU for bf16 arithmetic (`OpenVinoKind.skip_reason`)."""
        return self.precision == "bf16"


class OpenVinoKind(Kind):
    name = "openvino"
    params = OpenVinoParams
    generate_params = OpenVinoGenerateParams
    weight_files = ("*.xml", "*.bin")
    requires = ("openvino", "nncf")
    extra = "openvino"
    engine = "openvino"
    hub_class = "optimum.intel.OVModelForSequenceClassification"

    def build(self, name: str, variant: OpenVinoParams, inputs: BuildInputs, out_dir: Path) -> dict:
        import openvino as ov

        from quantpipe.calibration import calibration_sample
        from quantpipe.inference import Tokenizer

        source = Path(inputs.onnx) / MODEL_FILE
        if not source.is_file():
            raise QuantpipeError(f"{source}: ONNX model not found (run the export stage)")
        with loading(source, "ONNX model"):
            model = ov.convert_model(str(source))
        if variant.weights == "int8":
            cfg = inputs.params.calibrations[variant.calibration]
            texts = calibration_sample(inputs.train_texts(), cfg)
            model = nncf_quantize(name, model, texts, Tokenizer(inputs.base), cfg.max_length, variant)
        ov.save_model(model, str(Path(out_dir) / IR_FILE), compress_to_fp16=False)
        copy_tokenizer(inputs.onnx, out_dir)
        return OpenVinoClassifier(out_dir, variant, variant.runtime_threads(inputs.params.evaluate)).computed_in()

    def skip_reason(self, variant: OpenVinoParams | OpenVinoGenerateParams, cpu: dict) -> str | None:
        if variant.needs_bf16 and not has_bf16(cpu):
            return "bf16 precision: this CPU has neither AVX512_BF16 nor AMX-BF16 (OpenVINO would compute in f32)"
        return None

    def load(self, model_dir: Path, variant: OpenVinoParams, cfg: EvaluateParams) -> OpenVinoClassifier:
        return OpenVinoClassifier(model_dir, variant, variant.runtime_threads(cfg))

    def precision(self, variant: OpenVinoParams, resolved: dict) -> str:
        arithmetic = resolved.get("inference_precision", "f32")
        if variant.weights == "int8":
            return f"int8 weights and activations (NNCF), {arithmetic} elsewhere"
        return f"fp32 weights, {arithmetic} arithmetic"

    def hub_loading(self, variant: OpenVinoParams, cfg: EvaluateParams) -> list[str]:
        config = {key: str(value) for key, value in compile_config(variant, variant.runtime_threads(cfg)).items()}
        lines = ["from optimum.intel import OVModelForSequenceClassification", ""]
        if variant.streams > 1:
            lines.append(f"# {variant.streams} streams pay off with {variant.streams} requests in flight, as measured")
        return [*lines, f"model = OVModelForSequenceClassification.from_pretrained(path, ov_config={config!r})"]

    def build_generate(
        self, name: str, variant: OpenVinoGenerateParams, base_dir: Path, onnx_dir: Path, out_dir: Path
    ) -> dict:
        """Each ONNX file converted to OpenVINO IR (`<file>.xml` and `.bin`, weights kept in fp32 on disk); with
        `weights: int8`, the files of `parts` compressed by `nncf.compress_weights` (INT8_ASYM, data-free)."""
        import openvino as ov

        from quantpipe.seq2seq.export import part_files

        compressed = []
        for part, files in part_files(onnx_dir).items():
            for file in files:
                with loading(onnx_dir / file, "ONNX model"):
                    model = ov.convert_model(str(onnx_dir / file))
                if variant.weights == "int8" and part in variant.parts:
                    import nncf

                    model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
                    compressed.append(file)
                ov.save_model(model, str(out_dir / file.replace(".onnx", ".xml")), compress_to_fp16=False)
        copy_files(onnx_dir, out_dir, lambda item: item.suffix != ".onnx" and not item.name.endswith(".onnx_data"))
        return {"resolved": {"compressed": compressed}}

    def load_generate(self, model_dir: Path, variant: OpenVinoGenerateParams, serving: GenerateServing):
        """The IR files compiled for OpenVINO's CPU plugin (one stream with the LATENCY hint, or `streams` with the
        THROUGHPUT hint, one set of infer requests each) under the lean loop."""
        from quantpipe.seq2seq.lean import LeanSeq2seq, openvino_sessions

        served = variant.served_by(serving.threads)
        check_model_dir(model_dir)
        with loading(model_dir, "seq2seq OpenVINO model"):
            sessions = openvino_sessions(model_dir, served["threads"], variant.precision, served["streams"])
            return LeanSeq2seq(model_dir, sessions, serving.max_length, serving.keep_source_words)


KIND = OpenVinoKind()
