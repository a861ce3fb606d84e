"""ONNX export with Optimum, optionally followed by ORTOptimizer graph optimization (O1-O4)."""

from __future__ import annotations

import shutil
from pathlib import Path

from quantpipe.errors import QuantpipeError

MODEL_FILE = "model.onnx"


def export_onnx(base_dir: Path, out_dir: Path, optimization: str = "none") -> Path:
    """Export the classifier in `base_dir` to `out_dir/model.onnx` (plus config and tokenizer)."""
    from optimum.exporters.onnx import main_export

    if not (Path(base_dir) / "config.json").is_file():
        raise QuantpipeError(f"{base_dir}: base model not found (run the base_model stage)")
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
