"""ONNX Runtime's int8 tooling, without params: the presets of Optimum's `AutoQuantizationConfig` and which one
this CPU runs best, the operators each quantization mode knows, and the quantizers run directly (static with
stored ranges, dynamic on a fused graph, embeddings). Callers pass plain values and ONNX Runtime / Optimum
configs; the kinds `dynamic` and `static` (`quantpipe.kinds.ort_int8`, and `dynamic`'s seq2seq files through
`quantpipe.seq2seq.quantize`) use it."""

from __future__ import annotations

import logging
from pathlib import Path

from quantpipe.config.constants import PRESETS
from quantpipe.errors import QuantpipeError
from quantpipe.io import read_onnx

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


def cpu_isa(cpu: dict) -> str:
    """The int8-relevant instruction set of a CPU (`environment.cpu_info()`): arm64, avx512_vnni, avx512, avx2."""
    if cpu["machine"].lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = {flag for flag, on in cpu["flags"].items() if on}
    return next((isa for isa in ("avx512_vnni", "avx512") if set(PRESET_NEEDS[isa]) <= flags), "avx2")


def resolve_preset(where: str, preset: str, cpu: dict) -> str:
    """`auto` -> the preset measured best for this CPU's instruction set (AUTO_PRESETS); an explicit preset
    whose instructions the CPU lacks is kept, with a warning naming both, unless `auto` would pick it too.
    `where` names the variant in messages (`variants.<name>`); a preset not in PRESETS is one error line."""
    if preset not in ("auto", *PRESETS):
        raise QuantpipeError(f"{where}.preset: unknown preset '{preset}' (known: auto, {', '.join(PRESETS)})")
    isa = cpu_isa(cpu)
    chosen = AUTO_PRESETS[isa]
    if preset == "auto":
        return chosen
    lacking = [flag for flag in PRESET_NEEDS.get(preset, ()) if not cpu["flags"].get(flag)]
    if preset != chosen and (lacking or (preset == "arm64") != (isa == "arm64")):
        logger.warning(
            "%s.preset: %s targets %s, which this CPU (%s, %s) lacks; ONNX Runtime runs it with the "
            "kernels it has, slower or (u8s8 without VNNI) with saturating products (preset: auto picks %s here)",
            where,
            preset,
            ", ".join(lacking) or "arm64",
            cpu["model"],
            cpu["machine"],
            chosen,
        )
    return preset


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
