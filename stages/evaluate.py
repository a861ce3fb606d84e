"""Stage evaluate: one model on every evaluation dataset -> metrics/eval/<name>/<dataset>.json."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.data import read_prepared
from quantpipe.evaluation import evaluate_model
from quantpipe.inference import check_max_length
from quantpipe.io import atomic_dir, write_json
from quantpipe.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--name", required=True, help="variant or baseline name")
    parser.add_argument("--kind", choices=["pytorch", "onnx"], default="onnx")
    parser.add_argument("--model", required=True, type=Path, help="model directory")
    parser.add_argument("--tokenizer", default="models/base", type=Path)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    cfg = load_params(args.params).evaluate
    check_max_length(args.tokenizer, cfg.max_length, "evaluate.max_length")
    frames = {name: read_prepared(args.prepared, name, "eval") for name in cfg.datasets}
    results = evaluate_model(args.name, args.kind, args.model, args.tokenizer, frames, cfg)
    with atomic_dir(args.out) as tmp:
        for dataset, metrics in results.items():
            write_json(tmp / f"{dataset}.json", metrics)
            print(
                f"{args.name}/{dataset}: accuracy {metrics['accuracy']:.4f} "
                f"[{metrics['accuracy_ci_low']:.4f}, {metrics['accuracy_ci_high']:.4f}], "
                f"peak RSS {metrics['peak_rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    run_stage(main)
