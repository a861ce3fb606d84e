"""ONNX export with Optimum, optionally followed by ORTOptimizer graph optimization (O1-O4)."""

from __future__ import annotations

import shutil
from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.io import check_model_dir, loading, read_onnx

MODEL_FILE = "model.onnx"


def export_onnx(base_dir: Path, out_dir: Path, optimization: str = "none") -> Path:
    """Export the classifier in `base_dir` to `out_dir/model.onnx` (plus config and tokenizer)."""
    from optimum.exporters.onnx import main_export

    if not (Path(base_dir) / "config.json").is_file():
        raise QuantpipeError(f"{base_dir}: base model not found (run the base_model stage)")
    check_model_dir(base_dir)
    with loading(base_dir, "PyTorch model directory", (OSError, ValueError)):
        main_export(str(base_dir), output=out_dir, task="text-classification", do_validation=False)
    if optimization != "none":
        optimize_onnx(out_dir, optimization)
    return out_dir / MODEL_FILE


def optimize_onnx(model_dir: Path, level: str) -> None:
    """Apply `AutoOptimizationConfig.<level>` in place: model.onnx becomes the optimized graph."""
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    optimizer = ORTOptimizer.from_pretrained(model_dir, file_names=[MODEL_FILE])
    scratch = model_dir / "_optimized"
    optimizer.optimize(save_dir=scratch, optimization_config=AutoOptimizationConfig.with_optimization_level(level))
    shutil.move(scratch / "model_optimized.onnx", model_dir / MODEL_FILE)
    shutil.rmtree(scratch)


def infer_shapes(model_path: Path) -> None:
    """Type every tensor of a fused graph in place with ONNX Runtime's symbolic shape inference.

    ONNX's own inference cannot type contrib-op outputs (Attention, SkipLayerNormalization, ...);
    without types, the calibrator skips those tensors and static quantization finds no range for them.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = SymbolicShapeInference.infer_shapes(onnx.load(str(model_path)), auto_merge=True)
    onnx.save(model, str(model_path))


def prepare_graph(model_dir: Path, level: str, out_dir: Path) -> Path:
    """Copy the model directory to `out_dir`, optimize it at `level` and type its tensors; the model path."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / MODEL_FILE).is_file():
        raise QuantpipeError(f"{model_dir / MODEL_FILE}: ONNX model not found (run the export stage)")
    read_onnx(model_dir / MODEL_FILE, load_external_data=False)  # a corrupt graph stops here, in one line
    shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
    if level != "none":
        optimize_onnx(out_dir, level)
        infer_shapes(out_dir / MODEL_FILE)
    return out_dir / MODEL_FILE
