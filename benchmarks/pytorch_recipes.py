"""PyTorch's own CPU recipes, measured side by side: fp32 eager, fp32 under `torch.compile(dynamic=True)`, and,
where the CPU has native bf16 (AVX512_BF16 or AMX-BF16), bf16 autocast with and without torch.compile.

Every model is the `pytorch` kind's own `TorchClassifier` (what `autocast: bf16` and `compile: true` run) on the
fine-tuned `models/pytorch/base` (after `dvc repro`), timed in this one process, rounds alternating between the models
(`time_side_by_side`, tokenization included, texts sorted by length and padded per batch). A compiled model is
first run once over every text, untimed (compiling for the shapes it meets), and that time is printed. Not a
test: it prints a table. Venv active:

    python benchmarks/pytorch_recipes.py --rounds 6 --max-samples 300
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from quantpipe.environment import cpu_info, has_bf16
from quantpipe.inference import Tokenizer, predict
from quantpipe.kinds.pytorch import TorchClassifier
from quantpipe.side_by_side import time_side_by_side

DATASETS = ("sst2", "amazon")  # their evaluated split, as `dvc repro` prepares it: data/prepared/<name>/eval.parquet


def ratio(a: list[float], b: list[float]) -> str:
    r = np.asarray(a) / np.asarray(b)
    return f"{np.median(r):.2f}x [{r.min():.2f}, {r.max():.2f}]"


def recipes(model_dir: Path, threads: int, cpu: dict) -> dict[str, TorchClassifier]:
    """The recipes this CPU can run as asked (bf16 only where it is native)."""
    autocasts = ["none", "bf16"] if has_bf16(cpu) else ["none"]
    return {
        f"{'fp32' if autocast == 'none' else 'bf16 autocast'}{' + torch.compile' if compile else ''}": (
            TorchClassifier(model_dir, threads, autocast=autocast, compile=compile)
        )
        for autocast in autocasts
        for compile in (False, True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/pytorch/base"), help="the fine-tuned fp32 model")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cpu = cpu_info()
    cfg = SimpleNamespace(batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)
    tokenizer = Tokenizer(args.model)
    classifiers = recipes(args.model, args.threads, cpu)
    flags = ", ".join(flag for flag, present in cpu["flags"].items() if present) or "none of the tracked flags"
    print(
        f"{args.model}: batches of {args.batch_size} padded per batch (max length {args.max_length}), "
        f"{args.threads} threads, {args.rounds} rounds alternating between the models; speed ratios: median "
        f"[min, max] of the per-round ratios (tokenization included); torch {torch.__version__}; CPU: "
        f"{cpu['model']} {cpu.get('family_model', '')}, {cpu['cores']} cores, {flags}"
    )
    for dataset in args.datasets:
        path = f"data/prepared/{dataset}/eval.parquet"
        texts = pd.read_parquet(path)["text"].head(args.max_samples).tolist()
        for name, classifier in classifiers.items():
            if classifier.forward is not classifier.model:
                start = time.perf_counter()
                predict(classifier, tokenizer, texts, cfg.batch_size, cfg.max_length)
                print(f"{dataset}: {name}: compiled over its {len(texts)} texts in {time.perf_counter() - start:.0f} s")
        runs = time_side_by_side(classifiers, tokenizer, texts, cfg, args.rounds)
        fp32 = runs["fp32"]
        rows = {
            name: {
                "samples/s (median)": f"{np.median(run['samples_per_second']):.1f}",
                "vs fp32 eager": ratio(run["samples_per_second"], fp32["samples_per_second"]),
                "labels = fp32's": f"{(run['labels'] == fp32['labels']).mean():.3f}",
            }
            for name, run in runs.items()
        }
        print(f"\n{dataset}: {len(texts)} texts of {path}")
        print(pd.DataFrame.from_dict(rows, orient="index").to_markdown())


if __name__ == "__main__":
    main()
