"""The static int8 levers, one at a time around the default static variant, measured side by side.

Each row changes one thing of `variants.<--variant>` (or of its calibration) and is quantized with the
pipeline's own code; every model is scored on each evaluation dataset and timed (model-only samples/s,
repeats alternating between the models) in this one process, next to the fp32 ONNX model and the dynamic
variants of params.yaml. Not a test: it prints a table. Run after `dvc repro` (it reads models/onnx/base and
models/calibration), venv active:

    python benchmarks/static_levers.py --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from quantpipe.calibration import calibrate
from quantpipe.config import load_params
from quantpipe.config.sections import CalibrationParams
from quantpipe.data import read_prepared
from quantpipe.inference import Tokenizer
from quantpipe.kinds.ort_int8 import OrtQuantParams, quantize_variant
from quantpipe.sensitivity import score_side_by_side

# label: (changes to the variant, changes to its calibration)
LEVERS = {
    "per-tensor weights": ({"per_channel": False}, {}),
    "symmetric activations": ({"symmetric_activations": True}, {}),
    "MatMul in QOperator format": ({"format": "QOperator", "fp32_ops_read_fp32": False}, {}),
    "Attention left fp32": ({"operators": ["MatMul"]}, {}),
    "MatMul outputs requantized": ({"extra_options": {"MatMulConstBOnly": True}}, {}),
    "fp32 ops read the Q/DQ copy": ({"fp32_ops_read_fp32": False}, {}),
    "no graph optimization (MatMul QDQ)": (
        {"optimization": "none", "operators": ["MatMul"], "extra_options": {}, "fp32_ops_read_fp32": False},
        {"optimization": "none"},
    ),
    "calibration: 50 samples": ({}, {"num_samples": 50}),
    "calibration: percentile 99.999": ({}, {"method": "percentile"}),
    "calibration: entropy": ({}, {"method": "entropy"}),
    "calibration: length 128": ({}, {"max_length": 128}),
}


def build(params, variant_name: str, scratch: Path) -> dict[str, Path]:
    """Model file per row: the default variant, then each lever applied alone."""
    base = params.variants[variant_name]
    models = {f"{variant_name} (default)": Path("models/quantized") / variant_name / "model.onnx"}
    calibration_texts = read_prepared("data/prepared", params.data.train_dataset, "train")["text"]
    for i, (label, (variant_changes, calibration_changes)) in enumerate(LEVERS.items()):
        # validated like params.yaml, so a lever cannot build a combination the pipeline refuses
        cal_dir, variant = (
            Path("models/calibration"),
            OrtQuantParams.model_validate({**base.model_dump(), **variant_changes}),
        )
        if calibration_changes:
            cfg = CalibrationParams.model_validate(
                {**params.calibrations[base.calibration].model_dump(), **calibration_changes}
            )
            cal_dir = scratch / "calibration"
            (cal_dir / f"c{i}").mkdir(parents=True)
            calibrate(Path("models/onnx/base"), calibration_texts, cfg, cal_dir / f"c{i}")
            variant = variant.model_copy(update={"calibration": f"c{i}"})
        out = scratch / f"v{i}"
        out.mkdir()
        models[label] = quantize_variant(label, variant, Path("models/onnx/base"), cal_dir, out)
        print(f"built: {label}", flush=True)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="static_int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=None, help="cap per dataset")
    args = parser.parse_args()
    params = load_params()
    cfg = params.evaluate
    tokenizer = Tokenizer("models/pytorch/base")
    frames = {d: read_prepared("data/prepared", d, "eval").head(args.max_samples) for d in cfg.datasets}
    with tempfile.TemporaryDirectory(prefix="static-levers-") as scratch:
        models = {"onnx_fp32": Path("models/onnx/base/model.onnx")}
        models |= {
            name: Path("models/quantized") / name / "model.onnx"
            for name, v in params.variants.items()
            if v.kind == "dynamic"
        }
        models |= build(params, args.variant, Path(scratch))
        rows = {name: {} for name in models}
        for dataset, frame in frames.items():
            scores = score_side_by_side(
                models, tokenizer, frame["text"].tolist(), frame["label"].to_numpy(), cfg, args.repeats
            )
            for name, score in scores.items():
                delta = (score["accuracy"] - scores["onnx_fp32"]["accuracy"]) * 100
                rows[name][f"{dataset} accuracy"] = f"{score['accuracy']:.4f} ({delta:+.2f} pt)"
                rows[name][f"{dataset} samples/s"] = f"{score['samples_per_second']:.1f}"
    table = pd.DataFrame.from_dict(rows, orient="index")
    print(
        f"\n{args.variant}: one lever at a time; model-only samples/s, median of {args.repeats} alternating "
        f"passes, batch size {cfg.batch_size}, {cfg.threads} threads; "
        + ", ".join(f"{d}: {len(f)} examples" for d, f in frames.items())
    )
    print(table.to_markdown())


if __name__ == "__main__":
    main()
