"""Quantize the fp32 ONNX model into one variant with Optimum's ORTQuantizer and AutoQuantizationConfig."""

from __future__ import annotations

import shutil
from pathlib import Path

from quantpipe.calibration import RANGES_FILE, tensors_range
from quantpipe.errors import QuantpipeError
from quantpipe.export import optimize_onnx
from quantpipe.io import read_json
from quantpipe.params import VariantParams


def quantization_config(variant: VariantParams):
    """`AutoQuantizationConfig.<preset>(...)` from the variant's params."""
    from onnxruntime.quantization import QuantFormat
    from optimum.onnxruntime import AutoQuantizationConfig
    from optimum.onnxruntime.configuration import default_quantization_parameters

    kwargs = dict(
        is_static=variant.kind == "static",
        use_symmetric_activations=variant.symmetric_activations,
        use_symmetric_weights=variant.symmetric_weights,
        per_channel=variant.per_channel,
        nodes_to_exclude=list(variant.nodes_to_exclude),
        operators_to_quantize=list(variant.operators) if variant.operators else None,
    )
    if variant.preset in ("avx2", "avx512"):
        kwargs["reduce_range"] = bool(variant.reduce_range)
    config = getattr(AutoQuantizationConfig, variant.preset)(**kwargs)
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
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization import QuantFormat

    if not config.is_static:
        known, mode = IntegerOpsRegistry, "dynamic"
    elif config.format == QuantFormat.QDQ:
        known, mode = QDQRegistry, "static QDQ"
    else:
        known, mode = QLinearOpsRegistry, "static QOperator"
    unknown = [op for op in config.operators_to_quantize if op not in known]
    if unknown:
        raise QuantpipeError(f"operators: {unknown} cannot be quantized in {mode} mode (known: {sorted(known)})")


def quantize_variant(name: str, variant: VariantParams, model_dir: Path, calibration_dir: Path | None,
                     out_dir: Path) -> Path:
    """Write `out_dir/model.onnx` (plus config and tokenizer) for one variant."""
    from optimum.onnxruntime import ORTQuantizer

    model_dir = Path(model_dir)
    if not (model_dir / "model.onnx").is_file():
        raise QuantpipeError(f"{model_dir / 'model.onnx'}: ONNX model not found (run the export stage)")
    ranges = None
    if variant.kind == "static":
        ranges_file = Path(calibration_dir or "") / str(variant.calibration) / RANGES_FILE
        if not ranges_file.is_file():
            raise QuantpipeError(
                f"variants.{name}.calibration: ranges for '{variant.calibration}' not found at {ranges_file} "
                "(run the calibrate stage)"
            )
        ranges = tensors_range(read_json(ranges_file))
    config = quantization_config(variant)
    out = Path(out_dir) / "model.onnx"
    if variant.optimization == "none":
        quantizer = ORTQuantizer.from_pretrained(model_dir, file_name="model.onnx")
        quantizer.quantize(quantization_config=config, save_dir=out_dir, calibration_tensors_range=ranges)
        shutil.move(Path(out_dir) / "model_quantized.onnx", out)
    else:
        optimized = Path(out_dir) / "_optimized"
        shutil.copytree(model_dir, optimized)
        optimize_onnx(optimized, variant.optimization)
        quantize_fused_dynamic(optimized / "model.onnx", out, config)
        for item in optimized.iterdir():  # config, tokenizer and ORT config travel with the model
            if item.name != "model.onnx" and not (Path(out_dir) / item.name).exists():
                shutil.move(item, Path(out_dir) / item.name)
        shutil.rmtree(optimized)
    return out


def quantize_fused_dynamic(model_path: Path, out_path: Path, config) -> None:
    """Dynamic quantization of an ORTOptimizer-fused graph with onnxruntime.quantization directly.

    Optimum's ORTQuantizer cannot type the fused contrib ops (Attention, SkipLayerNormalization, ...);
    `DefaultTensorType` tells ONNX Runtime's quantizer to treat untyped tensors as float.
    """
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        model_input=model_path,
        model_output=out_path,
        op_types_to_quantize=list(config.operators_to_quantize),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=config.weights_dtype,
        nodes_to_exclude=list(config.nodes_to_exclude),
        extra_options={
            "DefaultTensorType": onnx.TensorProto.FLOAT,
            "WeightSymmetric": config.weights_symmetric,
            "ActivationSymmetric": config.activations_symmetric,
        },
    )
