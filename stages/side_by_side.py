"""Stage side_by_side: every model timed in one process, rounds alternating -> metrics/side_by_side.json."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.data import read_prepared
from quantpipe.evaluation import load_classifier
from quantpipe.inference import check_max_length
from quantpipe.io import write_json
from quantpipe.params import load_params
from quantpipe.side_by_side import time_side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", default="models/base", type=Path, help="PyTorch model and tokenizer")
    parser.add_argument("--onnx", default="models/onnx", type=Path)
    parser.add_argument("--quantized", default="models/quantized", type=Path)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="metrics/side_by_side.json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    cfg, sbs = params.evaluate, params.side_by_side
    check_max_length(args.base, cfg.max_length, "evaluate.max_length")
    from transformers import AutoTokenizer

    models = {"pytorch_fp32": ("pytorch", args.base), "onnx_fp32": ("onnx", args.onnx)}
    models |= {name: ("onnx", args.quantized / name) for name in params.variants}
    classifiers = {name: load_classifier(kind, path, cfg) for name, (kind, path) in models.items()}
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    result = {
        "rounds": sbs.rounds,
        "max_samples": sbs.max_samples,
        "batch_size": cfg.batch_size,
        "threads": cfg.threads,
        "datasets": {},
    }
    for dataset in cfg.datasets:
        texts = read_prepared(args.prepared, dataset, "eval")["text"].tolist()[: cfg.max_samples][: sbs.max_samples]
        timed = time_side_by_side(classifiers, tokenizer, texts, cfg, sbs.rounds, desc=f"{dataset} rounds")
        result["datasets"][dataset] = {
            "examples": len(texts),
            "models": {
                name: {key: t[key] for key in ("samples_per_second", "model_samples_per_second")}
                for name, t in timed.items()
            },
        }
        for name, t in timed.items():
            print(f"{dataset} {name}: samples/s per round " + ", ".join(f"{s:.1f}" for s in t["samples_per_second"]))
    write_json(args.out, result)


if __name__ == "__main__":
    run_stage(main)
