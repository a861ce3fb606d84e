"""Side-by-side speed ratios in one process run (not a test: these machines are noisy, ratios are what count).

1. The reference's way against ours for the same int8 model: Optimum's ORTModelForSequenceClassification
   through a `transformers` text-classification pipeline, one example at a time, against our evaluate
   stage's path (tokenize once, length-sorted batches padded per batch, ONNX Runtime session).
2. Our best variant within the accuracy budget (from metrics/compare.json) against PyTorch fp32, both in
   our harness.
Repeats alternate between the two sides of each pair; the ratio is reported per repeat (median, min, max).

    python benchmarks/reference_vs_ours.py --dataset sst2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.environment import environment
from quantpipe.inference import Tokenizer, predict
from quantpipe.kinds import pipeline_models


def reference_way(model_dir: Path, texts: list[str], threads: int) -> float:
    """samples/s of the reference: ORTModel + transformers pipeline, one text per call."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = ORTModelForSequenceClassification.from_pretrained(
        model_dir, file_name="model.onnx", session_options=options
    )
    clf = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir))
    clf(texts[:8])  # warm-up
    start = time.perf_counter()
    for text in texts:
        clf(text, truncation=True)
    return len(texts) / (time.perf_counter() - start)


def ours(classifier, tokenizer, texts: list[str], cfg, length) -> float:
    """samples/s in our harness, each text cut by the model's length policy."""
    return len(texts) / predict(classifier, tokenizer, texts, cfg.batch_size, length).total_seconds


def summary(ratios: list[float]) -> str:
    return f"{np.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} repeats)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--int8", default="dynamic_int8", help="variant measured the reference's way and ours")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=None)
    args = parser.parse_args()
    params = load_params()
    cfg = params.evaluate
    texts = read_prepared("data/prepared", args.dataset, "eval")["text"].tolist()[: args.max_samples]
    tokenizer = Tokenizer("models/pytorch/base")
    summary_file = json.loads(Path("metrics/compare.json").read_text())[args.dataset]
    best = next(name for name, row in summary_file.items() if row["best_within_budget"])
    models = pipeline_models(params, Path("models/pytorch/base"), Path("models/onnx/base"), Path("models/quantized"))
    int8, best_model, torch_model = (
        kind.load(path, variant, cfg)
        for kind, variant, path in (models[args.int8], models[best], models["pytorch_fp32"])
    )
    int8_dir = models[args.int8][2]
    int8_length, best_length, torch_length = (
        models[name][1].length_policy(cfg) for name in (args.int8, best, "pytorch_fp32")
    )
    for model, length in ((int8, int8_length), (best_model, best_length), (torch_model, torch_length)):
        predict(model, tokenizer, texts[: cfg.batch_size * 2], cfg.batch_size, length)

    ref_ratios, best_ratios, figures = [], [], {"reference": [], "ours_int8": [], "best": [], "pytorch": []}
    for _ in range(args.repeats):
        figures["reference"].append(reference_way(int8_dir, texts, cfg.threads))
        figures["ours_int8"].append(ours(int8, tokenizer, texts, cfg, int8_length))
        figures["pytorch"].append(ours(torch_model, tokenizer, texts, cfg, torch_length))
        figures["best"].append(ours(best_model, tokenizer, texts, cfg, best_length))
        ref_ratios.append(figures["ours_int8"][-1] / figures["reference"][-1])
        best_ratios.append(figures["best"][-1] / figures["pytorch"][-1])
    env = environment()
    print(
        f"dataset {args.dataset}: {len(texts)} texts, batch size {cfg.batch_size}, {cfg.threads} threads; "
        f"CPU {env['cpu']['model']} flags {[f for f, on in env['cpu']['flags'].items() if on]}; "
        f"onnxruntime {env['versions']['onnxruntime']}, torch {env['versions']['torch']}"
    )
    for name, values in figures.items():
        print(f"  {name:10s} samples/s: median {np.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})")
    print(f"our path vs the reference's way, same int8 model ({args.int8}): {summary(ref_ratios)}")
    print(f"best variant within budget ({best}) vs PyTorch fp32, our harness: {summary(best_ratios)}")


if __name__ == "__main__":
    main()
