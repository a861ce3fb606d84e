"""Quantize the fp32 ONNX model into one variant: Optimum's ORTQuantizer and AutoQuantizationConfig for the
plain cases, ONNX Runtime's quantizers directly for optimized (fused) graphs and extra options."""

from __future__ import annotations

import difflib
import logging
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from quantpipe.calibration import RANGES_FILE, read_ranges, tensors_range
from quantpipe.config.constants import CPU_OPT_LEVELS, PRESETS
from quantpipe.config.sections import VariantParams, check_calibration
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE, prepare_graph
from quantpipe.io import check_model_dir, read_onnx

logger = logging.getLogger(__name__)

# what each preset's kernels need: /proc/cpuinfo flags (x86) or the machine name (arm64)
PRESET_NEEDS = {"avx2": ("avx2",), "avx512": ("avx512f",), "avx512_vnni": ("avx512f", "avx512_vnni")}
# What `preset: auto` picks per instruction set. Without AVX-512 (measured on a 2-core AVX2-only EPYC, side by
# side, 6 rounds, 300 texts, docs/results.md): u8s8, the avx512 preset's types with reduce_range off, ran 1.40x
# (dynamic) and 1.53x (static) ONNX Runtime fp32 on SST-2, against 1.22x and 1.33x for u8u8 (the avx2 preset),
# accuracy within 0.5 pt of each other.
AUTO_PRESETS = {"arm64": "arm64", "avx512_vnni": "avx512_vnni", "avx512": "avx512", "avx2": "avx512"}
FUSED_ATTENTION_LEVELS = ("O2", "O3")  # ORTOptimizer levels that fuse self-attention into `Attention`
# onnxruntime.quantization extra_options a variant may set (see quantize_static's docstring); the symmetry
# options are the typed fields symmetric_activations / symmetric_weights instead.
QDQ_ONLY_OPTIONS = (
    "AddQDQPairToWeight",
    "DedicatedQDQPair",
    "QDQOpTypePerChannelSupportToAxis",
    "UseQDQContribOps",
    "QDQKeepRemovableActivations",
    "QDQDisableWeightAdjustForInt32Bias",
)
EXTRA_OPTIONS = (
    "ForceQuantizeNoInputCheck",
    "MatMulConstBOnly",
    "OpTypesToExcludeOutputQuantization",
    "MinimumRealRange",
    *QDQ_ONLY_OPTIONS,
)


class OrtQuantParams(VariantParams):
    """An ONNX Runtime int8 model (kinds `dynamic` and `static`): Optimum's `AutoQuantizationConfig.<preset>(...)`
    choices, then ONNX Runtime's quantizers."""

    kind: Literal["dynamic", "static"] = Field(
        description="`dynamic`: activation ranges computed at run time; `static`: fixed ranges from `calibration`"
    )
    preset: Literal[("auto", *PRESETS)] = Field(
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
        check_calibration(name, self.calibration, params)
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


def cpu_isa(cpu: dict) -> str:
    """The int8-relevant instruction set of a CPU (`environment.cpu_info()`): arm64, avx512_vnni, avx512, avx2."""
    if cpu["machine"].lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = {flag for flag, on in cpu["flags"].items() if on}
    return next((isa for isa in ("avx512_vnni", "avx512") if set(PRESET_NEEDS[isa]) <= flags), "avx2")


def resolve_preset(name: str, preset: str, cpu: dict) -> str:
    """`auto` -> the preset measured best for this CPU's instruction set (AUTO_PRESETS); an explicit preset
    whose instructions the CPU lacks is kept, with a warning naming both, unless `auto` would pick it too."""
    isa = cpu_isa(cpu)
    chosen = AUTO_PRESETS[isa]
    if preset == "auto":
        return chosen
    lacking = [flag for flag in PRESET_NEEDS.get(preset, ()) if not cpu["flags"].get(flag)]
    if preset != chosen and (lacking or (preset == "arm64") != (isa == "arm64")):
        logger.warning(
            "variants.%s.preset: %s targets %s, which this CPU (%s, %s) lacks; ONNX Runtime runs it with the "
            "kernels it has, slower or (u8s8 without VNNI) with saturating products (preset: auto picks %s here)",
            name,
            preset,
            ", ".join(lacking) or "arm64",
            cpu["model"],
            cpu["machine"],
            chosen,
        )
    return preset


def graph_to_quantize(variant: OrtQuantParams, model_dir: Path, calibration_dir: Path | None) -> Path:
    """The fp32 graph a variant starts from: the calibrated optimized graph for an optimized static variant."""
    if variant.kind == "static" and variant.optimization != "none":
        return Path(calibration_dir or "") / str(variant.calibration) / MODEL_FILE
    return Path(model_dir) / MODEL_FILE


def quantization_config(variant: OrtQuantParams):
    """`AutoQuantizationConfig.<preset>(...)` from the variant's params."""
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
    preset = resolve_preset("", "auto", cpu_info()) if variant.preset == "auto" else variant.preset
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


def check_operators(config) -> None:
    """Operators ONNX Runtime cannot quantize in this mode would be skipped silently: reject them."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    if not config.is_static:
        known, mode = IntegerOpsRegistry, "dynamic"
    elif config.format == QuantFormat.QDQ:
        known, mode = QDQRegistry, "static QDQ"
    else:
        known, mode = QLinearOpsRegistry, "static QOperator"
    if config.is_static:  # a fused Attention is quantized in its own QOperator pass (quantize_static_with_ranges)
        known = {*known, "Attention"}
    unknown = [op for op in config.operators_to_quantize if op not in known]
    if unknown:
        raise QuantpipeError(f"operators: {unknown} cannot be quantized in {mode} mode (known: {sorted(known)})")


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
    """Write `out_dir/model.onnx` (plus config and tokenizer) for one variant; `nodes_to_quantize`, if
    given, restricts it to those nodes (the sensitivity analysis quantizes one layer at a time)."""
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


def _ort_extra_options(config, extra_options: dict) -> dict:
    import onnx

    return {
        "DefaultTensorType": onnx.TensorProto.FLOAT,  # fused contrib ops' outputs count as float
        "WeightSymmetric": config.weights_symmetric,
        "ActivationSymmetric": config.activations_symmetric,
        **extra_options,
    }


def operator_names(config) -> list[str]:
    """The operator types a config quantizes, as strings (Optimum may hold enum members)."""
    return [getattr(op, "value", op) for op in config.operators_to_quantize]


def quantize_static_with_ranges(
    model_path: Path, out_path: Path, config, ranges, extra_options: dict, fp32_ops_read_fp32: bool = False
) -> None:
    """Static quantization with precomputed ranges, through ONNX Runtime's quantizers directly.

    A fused `Attention` becomes `QAttention` in a first QOperator pass (ONNX Runtime ships the quantizer
    for it but registers it for dynamic mode only); the other operators follow in `config.format`.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantizationMode, registry
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.operators.attention import AttentionQuant
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = read_onnx(model_path)
    extra = _ort_extra_options(config, extra_options)
    common = {
        "per_channel": config.per_channel,
        "reduce_range": config.reduce_range,
        "weight_qType": config.weights_dtype,
        "activation_qType": config.activations_dtype,
        "tensors_range": ranges,
        "nodes_to_quantize": list(config.nodes_to_quantize) or None,
        "nodes_to_exclude": list(config.nodes_to_exclude),
        "extra_options": extra,
    }
    ops = operator_names(config)
    if "Attention" in ops:
        ops.remove("Attention")
        registered = registry.QLinearOpsRegistry.get("Attention")
        registry.QLinearOpsRegistry["Attention"] = AttentionQuant
        try:
            quantizer = ONNXQuantizer(
                model, mode=QuantizationMode.QLinearOps, static=True, op_types_to_quantize=["Attention"], **common
            )
            quantizer.quantize_model()
        finally:
            if registered is None:
                registry.QLinearOpsRegistry.pop("Attention")
            else:
                registry.QLinearOpsRegistry["Attention"] = registered
        model = quantizer.model.model
    if ops:
        if config.format == QuantFormat.QDQ:
            quantizer = QDQQuantizer(model, op_types_to_quantize=ops, **common)
        else:
            quantizer = ONNXQuantizer(
                model, mode=QuantizationMode.QLinearOps, static=True, op_types_to_quantize=ops, **common
            )
        quantizer.quantize_model()
        model = quantizer.model.model
        if fp32_ops_read_fp32 and config.format == QuantFormat.QDQ:
            read_fp32_in_fp32_ops(model)
    onnx.save(model, str(out_path))


def read_fp32_in_fp32_ops(model) -> int:
    """Let the ops that stay fp32 read the fp32 tensor a QuantizeLinear -> DequantizeLinear pair was made
    from, instead of its quantized copy (e.g. the residual input of SkipLayerNormalization, when the same
    tensor also feeds a quantized MatMul). A consumer counts as quantized, as in ONNX Runtime's QDQ node
    groups, when each of its inputs is a DequantizeLinear output or an integer tensor. Pairs, scales and
    zero points left unused are removed; a DequantizeLinear output that is a graph output is kept.
    Returns the number of inputs reconnected."""
    import onnx

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    integers = {init.name for init in graph.initializer if init.data_type not in floats}
    integers |= {
        v.name
        for v in (*graph.input, *graph.value_info)
        if v.type.tensor_type.elem_type and v.type.tensor_type.elem_type not in floats
    }

    def quantized(node) -> bool:
        return all(
            not name or name in integers or getattr(producer.get(name), "op_type", None) == "DequantizeLinear"
            for name in node.input
        )

    copies = {
        dq.output[0]: q.input[0]
        for dq in graph.node
        if dq.op_type == "DequantizeLinear"
        for q in [producer.get(dq.input[0])]
        if q is not None and q.op_type == "QuantizeLinear"
    }
    reconnected = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" and not quantized(node):
            for i, name in enumerate(node.input):
                if name in copies:
                    node.input[i] = copies[name]
                    reconnected += 1
    keep_outputs = {o.name for o in graph.output}
    for op_type in ("DequantizeLinear", "QuantizeLinear"):  # consumers first, then what fed them
        used = {name for node in graph.node for name in node.input} | keep_outputs
        kept = [n for n in graph.node if n.op_type != op_type or set(n.output) & used]
        del graph.node[:]
        graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input} | keep_outputs | {i.name for i in graph.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return reconnected


def quantize_fused_dynamic(model_path: Path, out_path: Path, config, extra_options: dict | None = None) -> None:
    """Dynamic quantization of an ORTOptimizer-fused graph with onnxruntime.quantization directly.

    Optimum's ORTQuantizer cannot type the fused contrib ops (Attention, SkipLayerNormalization, ...);
    `DefaultTensorType` tells ONNX Runtime's quantizer to treat untyped tensors as float.
    """
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        model_input=model_path,
        model_output=out_path,
        op_types_to_quantize=operator_names(config),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=config.weights_dtype,
        nodes_to_quantize=list(config.nodes_to_quantize) or None,
        nodes_to_exclude=list(config.nodes_to_exclude),
        extra_options=_ort_extra_options(config, extra_options or {}),
    )


def quantize_embeddings(model_path: Path) -> None:
    """Rewrite `model_path` with its `Gather` tables in int8 (ONNX Runtime's dynamic quantizer, `Gather` only:
    the table is stored quantized and the gathered rows dequantized)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = model_path.with_name(f".{model_path.name}.embeddings")
    quantize_dynamic(
        model_input=model_path,
        model_output=scratch,
        op_types_to_quantize=["Gather"],
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    scratch.replace(model_path)
