"""The ONNX Runtime int8 kinds `dynamic` and `static`: their params, what the params decide (preset, graph,
`AutoQuantizationConfig`, Optimum or ONNX Runtime directly), the build and the runtime. The quantizers themselves
are `quantpipe.ort_quantize`."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from quantpipe.calibration import RANGES_FILE, read_ranges, tensors_range
from quantpipe.config.constants import CPU_OPT_LEVELS, Preset
from quantpipe.config.sections import EvaluateParams, VariantParams, check_calibration
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE, prepare_graph
from quantpipe.io import check_model_dir, read_onnx
from quantpipe.kinds.base import BuildInputs, Kind
from quantpipe.kinds.onnx import load_onnx, ort_hub_loading
from quantpipe.ort_quantize import (
    EXTRA_OPTIONS,
    FUSED_ATTENTION_LEVELS,
    QDQ_ONLY_OPTIONS,
    check_operators,
    quantize_embeddings,
    quantize_fused_dynamic,
    quantize_static_with_ranges,
    resolve_preset,
)


class OrtQuantParams(VariantParams):
    """An ONNX Runtime int8 model (kinds `dynamic` and `static`): Optimum's `AutoQuantizationConfig.<preset>(...)`
    choices, then ONNX Runtime's quantizers."""

    kind: Literal["dynamic", "static"] = Field(
        description="`dynamic`: activation ranges computed at run time; `static`: fixed ranges from `calibration`"
    )
    preset: Preset = Field(
        "auto",
        description="`AutoQuantizationConfig` preset (target instruction set); `auto`: the one this CPU runs best "
        "(arm64, avx512_vnni, avx512, else avx2), recorded in the variant's metrics",
    )
    per_channel: bool = Field(False, description="weights quantized per output channel (else per tensor)")
    reduce_range: bool | None = Field(None, description="7-bit weights (null: the preset's choice)")
    symmetric_activations: bool = Field(False, description="activations quantized symmetrically (zero point 0)")
    symmetric_weights: bool = Field(True, description="weights quantized symmetrically")
    operators: list[str] | None = Field(
        None,
        min_length=1,
        description="operator types quantized (null: the "
        "preset's list); static `Attention` (fused graphs) becomes QAttention",
    )
    format: Literal["QOperator", "QDQ"] | None = Field(
        None, description="graph format (null: QDQ for static, QOperator for dynamic)"
    )
    calibration: str | None = Field(None, description="name in `calibrations`; required for static variants")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names left in fp32")
    optimization: Literal[CPU_OPT_LEVELS] = Field(
        "none", description="ORTOptimizer level applied before quantizing (static: the same as its calibration's)"
    )
    # Passed to onnxruntime.quantization (static: with the stored ranges; dynamic: on a fused graph).
    extra_options: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to `onnxruntime.quantization` "
        "(static: with the stored ranges; dynamic: needs `optimization`); known "
        f"keys: {', '.join(EXTRA_OPTIONS)} (the QDQ ones on static QDQ only)",
    )
    # Static QDQ: ops left in fp32 read the fp32 tensor itself, not its QuantizeLinear -> DequantizeLinear copy.
    fp32_ops_read_fp32: bool = Field(
        False,
        description="static QDQ: ops left in fp32 read the fp32 tensor itself, "
        "not its QuantizeLinear -> DequantizeLinear copy",
    )
    quantize_embeddings: bool = Field(
        False,
        description="after the main pass, the `Gather` tables (word, position and token-type embeddings: most of "
        "a small model's weights) in int8, dequantized on read",
    )

    @model_validator(mode="after")
    def _static_needs_calibration(self) -> OrtQuantParams:
        if self.kind == "static" and not self.calibration:
            raise ValueError("a static variant needs `calibration: <name in calibrations>`")
        if self.kind == "dynamic" and self.calibration:
            raise ValueError("a dynamic variant takes no calibration (ranges are computed at run time)")
        if self.reduce_range and self.preset in ("arm64", "avx512_vnni"):
            raise ValueError(
                f"reduce_range: the {self.preset} preset takes none (Optimum's AutoQuantizationConfig.{self.preset} "
                "has no reduce_range: its kernels do not saturate)"
            )
        if self.kind == "dynamic" and self.format == "QDQ":
            raise ValueError("dynamic quantization writes QOperator graphs only; use format: QOperator or kind: static")
        unknown = sorted(set(self.extra_options) - set(EXTRA_OPTIONS))
        if "SmoothQuant" in unknown:
            raise ValueError(
                "extra_options.SmoothQuant: not available (it needs neural-compressor and calibration "
                "data inside quantize_static; ranges here come from the calibrate stage)"
            )
        if {"ActivationSymmetric", "WeightSymmetric"} & set(unknown):
            raise ValueError(
                "extra_options: use symmetric_activations / symmetric_weights, not "
                "ActivationSymmetric / WeightSymmetric"
            )
        if unknown:
            raise ValueError(f"extra_options: unknown option(s) {unknown} (known: {list(EXTRA_OPTIONS)})")
        qdq_only = sorted(set(self.extra_options) & set(QDQ_ONLY_OPTIONS))
        static_qdq = self.kind == "static" and (self.format or "QDQ") == "QDQ"
        if qdq_only and not static_qdq:
            raise ValueError(f"extra_options: {qdq_only} apply to static QDQ variants only")
        if self.fp32_ops_read_fp32 and not static_qdq:
            raise ValueError(
                "fp32_ops_read_fp32: applies to static QDQ variants only (other formats insert no "
                "DequantizeLinear before fp32 ops)"
            )
        if self.extra_options and self.kind == "dynamic" and self.optimization == "none":
            raise ValueError(
                "extra_options on a dynamic variant need optimization O1-O4 "
                "(the unoptimized dynamic path is Optimum's ORTQuantizer, which ignores them)"
            )
        if (
            self.kind == "static"
            and "Attention" in (self.operators or [])
            and self.optimization not in FUSED_ATTENTION_LEVELS
        ):
            raise ValueError(
                f"operators: Attention exists only in a fused graph; set optimization to one of "
                f"{list(FUSED_ATTENTION_LEVELS)} (got {self.optimization})"
            )
        return self

    def check_references(self, name: str, params) -> None:
        check_calibration(f"variants.{name}.calibration", self.calibration, params)
        if not self.calibration:
            return
        level = params.calibrations[self.calibration].optimization
        if level != self.optimization:
            raise ValueError(
                f"variants.{name}: optimization {self.optimization} differs from calibrations.{self.calibration}"
                f".optimization {level} (ranges belong to the graph they were computed on)"
            )

    def check_sensitivity(self, name: str) -> None:
        """The sensitivity stage names the parts of the graph it quantizes: that graph must be stored."""
        if self.kind == "dynamic" and self.optimization != "none":
            raise ValueError(
                f"sensitivity.variant: '{name}' is an optimized dynamic variant; its fused graph is not stored, "
                "so its parts cannot be named (pick a static or unoptimized variant)"
            )


def graph_to_quantize(variant: OrtQuantParams, model_dir: Path, calibration_dir: Path | None) -> Path:
    """The fp32 graph a variant starts from: the calibrated optimized graph for an optimized static variant."""
    if variant.kind == "static" and variant.optimization != "none":
        return Path(calibration_dir or "") / str(variant.calibration) / MODEL_FILE
    return Path(model_dir) / MODEL_FILE


def with_resolved_preset(name: str, variant: OrtQuantParams) -> OrtQuantParams:
    """The variant with its preset resolved for this CPU (`auto` -> the measured best; an explicit preset the CPU
    lacks is kept, with a warning): the one place the preset is resolved, before anything quantizes."""
    return variant.model_copy(update={"preset": resolve_preset(f"variants.{name}", variant.preset, cpu_info())})


def quantization_config(variant: OrtQuantParams):
    """`AutoQuantizationConfig.<preset>(...)` from the variant's params (its preset resolved: `with_resolved_preset`)."""
    from onnxruntime.quantization import QuantFormat
    from optimum.onnxruntime import AutoQuantizationConfig
    from optimum.onnxruntime.configuration import default_quantization_parameters

    kwargs = {
        "is_static": variant.kind == "static",
        "use_symmetric_activations": variant.symmetric_activations,
        "use_symmetric_weights": variant.symmetric_weights,
        "per_channel": variant.per_channel,
        "nodes_to_exclude": list(variant.nodes_to_exclude),
        "operators_to_quantize": list(variant.operators) if variant.operators else None,
    }
    preset = variant.preset
    if preset == "auto":
        raise ValueError("quantization_config: resolve the preset first (with_resolved_preset)")
    if preset in ("avx2", "avx512"):
        kwargs["reduce_range"] = bool(variant.reduce_range)
    config = getattr(AutoQuantizationConfig, preset)(**kwargs)
    if variant.reduce_range is not None:
        config.reduce_range = variant.reduce_range
    if variant.format is not None and config.is_static:
        config.format = QuantFormat.QDQ if variant.format == "QDQ" else QuantFormat.QOperator
        if not variant.operators:  # the preset's default operator list depends on the format
            _, _, config.operators_to_quantize = default_quantization_parameters(True, config.format)
    check_operators(config)
    return config


def check_nodes_to_exclude(name: str, variant: OrtQuantParams, model_path: Path) -> None:
    """Names in `nodes_to_exclude` that are not nodes of the graph quantized would be ignored silently: refuse
    them (an optimized variant's graph is the fused one, whose nodes have other names)."""
    if not variant.nodes_to_exclude:
        return
    nodes = [node.name for node in read_onnx(model_path, load_external_data=False).graph.node]
    unknown = [node for node in variant.nodes_to_exclude if node not in set(nodes)]
    if unknown:
        graph = str(model_path) if variant.optimization == "none" else f"the {variant.optimization}-optimized graph"
        close = sorted({match for node in unknown for match in difflib.get_close_matches(node, nodes, n=2)})
        raise QuantpipeError(
            f"variants.{name}.nodes_to_exclude: {unknown} not in {graph}" + (f" (close: {close})" if close else "")
        )


def uses_optimum(variant: OrtQuantParams) -> bool:
    """Optimum's ORTQuantizer serves the plain cases; fused graphs and extra options need ONNX Runtime directly."""
    return variant.optimization == "none" and not variant.extra_options and not variant.fp32_ops_read_fp32


def quantize_variant(
    name: str,
    variant: OrtQuantParams,
    model_dir: Path,
    calibration_dir: Path | None,
    out_dir: Path,
    nodes_to_quantize: list[str] | None = None,
) -> Path:
    """Write `out_dir/model.onnx` (plus config and tokenizer) for one variant, its preset resolved
    (`with_resolved_preset`); `nodes_to_quantize`, if given, restricts it to those nodes (the sensitivity
    analysis quantizes one layer at a time)."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / MODEL_FILE).is_file():
        raise QuantpipeError(f"{model_dir / MODEL_FILE}: ONNX model not found (run the export stage)")
    check_model_dir(model_dir)
    read_onnx(model_dir / MODEL_FILE, load_external_data=False)  # a corrupt graph stops here, in one line
    ranges = None
    if variant.kind == "static":
        ranges_file = Path(calibration_dir or "") / str(variant.calibration) / RANGES_FILE
        if not ranges_file.is_file():
            raise QuantpipeError(
                f"variants.{name}.calibration: ranges for '{variant.calibration}' not found at {ranges_file} "
                "(run the calibrate stage)"
            )
        ranges = tensors_range(read_ranges(ranges_file))
    config = quantization_config(variant)
    if nodes_to_quantize is not None:
        config.nodes_to_quantize = list(nodes_to_quantize)
    out = out_dir / MODEL_FILE
    if uses_optimum(variant):
        check_nodes_to_exclude(name, variant, model_dir / MODEL_FILE)
        from optimum.onnxruntime import ORTQuantizer

        quantizer = ORTQuantizer.from_pretrained(model_dir, file_name=MODEL_FILE)
        quantizer.quantize(quantization_config=config, save_dir=out_dir, calibration_tensors_range=ranges)
        shutil.move(out_dir / "model_quantized.onnx", out)
        if variant.quantize_embeddings:
            quantize_embeddings(out)
        return out
    source = graph_to_quantize(variant, model_dir, calibration_dir)
    if not source.is_file():  # an optimized static variant reads the graph its ranges belong to
        raise QuantpipeError(f"{source}: optimized graph not found (run the calibrate stage)")
    scratch = out_dir / "_graph"
    if variant.kind == "dynamic":  # fuse a copy first (an optimized variant: uses_optimum is False)
        source = prepare_graph(model_dir, variant.optimization, scratch)
    check_nodes_to_exclude(name, variant, source)
    if variant.kind == "static":
        quantize_static_with_ranges(source, out, config, ranges, variant.extra_options, variant.fp32_ops_read_fp32)
    else:
        quantize_fused_dynamic(source, out, config, variant.extra_options)
    shutil.rmtree(scratch, ignore_errors=True)
    if variant.quantize_embeddings:
        quantize_embeddings(out)
    for item in model_dir.iterdir():  # config and tokenizer travel with the model
        if item.is_file() and item.name != MODEL_FILE:
            shutil.copy2(item, out_dir / item.name)
    return out


class OrtInt8Kind(Kind):
    """An ONNX Runtime int8 model; `dynamic` and `static` differ in their params' `kind` only."""

    params = OrtQuantParams
    sensitivity = True
    excludable_parts = True
    hub_class = "optimum.onnxruntime.ORTModelForSequenceClassification"

    def build(self, name: str, variant: OrtQuantParams, inputs: BuildInputs, out_dir: Path) -> dict:
        resolved = with_resolved_preset(name, variant)
        quantize_variant(name, resolved, inputs.onnx, inputs.calibration, out_dir)
        return {"preset": resolved.preset}

    def load(self, model_dir: Path, variant: OrtQuantParams, cfg: EvaluateParams):
        return load_onnx(model_dir, variant, cfg)

    def precision(self, variant: OrtQuantParams, resolved: dict) -> str:
        return f"int8 weights and activations ({variant.kind} quantization), fp32 elsewhere"

    def hub_loading(self, variant: OrtQuantParams, cfg: EvaluateParams) -> list[str]:
        return ort_hub_loading(variant, cfg)
