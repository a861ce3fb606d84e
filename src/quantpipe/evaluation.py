"""Evaluate one model (PyTorch fp32, ONNX fp32 or a quantized variant) on the evaluation datasets.

Predictions, batch-size-1 latencies and the memory figure come from a fresh child process that loads only
this model, so variants do not pollute each other; the parent scores the predictions. Throughput is timed
in the side_by_side stage, every model in one process.
"""

from __future__ import annotations

import multiprocessing
import resource
from pathlib import Path

import pandas as pd

from quantpipe.inference import OnnxClassifier, TorchClassifier, predict, single_example_latencies
from quantpipe.metrics import classification_metrics
from quantpipe.params import EvaluateParams
from quantpipe.statistics import latency_percentiles


def model_size_bytes(model_dir: Path, kind: str) -> int:
    """Size on disk of the weights (ONNX files, or the PyTorch safetensors/bin)."""
    patterns = ("*.onnx", "*.onnx_data") if kind == "onnx" else ("*.safetensors", "*.bin")
    return sum(f.stat().st_size for pattern in patterns for f in Path(model_dir).glob(pattern))


def load_classifier(kind: str, model_dir: Path, cfg: EvaluateParams):
    if kind == "pytorch":
        return TorchClassifier(model_dir, cfg.threads)
    return OnnxClassifier(Path(model_dir) / "model.onnx", cfg.threads, cfg.graph_optimization, cfg.execution_mode)


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def measure(kind: str, model_dir: str, tokenizer_dir: str, texts: dict[str, list[str]], cfg: EvaluateParams) -> dict:
    """Load the model, then per dataset: one pass over the whole split (the predictions) and batch-size-1
    latencies. Returns them with the process's peak resident memory. Throughput is not timed here: the
    side_by_side stage times every model in one process."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rss_before = _rss_bytes()
    classifier = load_classifier(kind, Path(model_dir), cfg)
    rss_loaded = _rss_bytes()
    out = {}
    for dataset, items in texts.items():
        run = predict(classifier, tokenizer, items, cfg.batch_size, cfg.max_length, desc=f"{dataset} predictions")
        latencies = single_example_latencies(
            classifier,
            tokenizer,
            items[: cfg.latency_samples],
            cfg.max_length,
            desc=f"{dataset} latency (batch size 1)",
        )
        out[dataset] = {"labels": run.labels, "latencies": latencies}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"datasets": out, "rss_before_load": rss_before, "rss_after_load": rss_loaded, "peak_rss": peak}


def measure_in_child(
    kind: str, model_dir: Path, tokenizer_dir: Path, texts: dict[str, list[str]], cfg: EvaluateParams
) -> dict:
    """`measure` in a fresh spawned process: its peak memory is this model's alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (kind, str(model_dir), str(tokenizer_dir), texts, cfg))


def evaluate_model(
    name: str, kind: str, model_dir: Path, tokenizer_dir: Path, datasets: dict[str, pd.DataFrame], cfg: EvaluateParams
) -> dict[str, dict]:
    """Metrics with confidence intervals, batch-size-1 latency percentiles, size and memory per dataset."""
    if cfg.max_samples:
        datasets = {k: v.head(cfg.max_samples) for k, v in datasets.items()}
    texts = {k: v["text"].tolist() for k, v in datasets.items()}
    measured = measure_in_child(kind, model_dir, tokenizer_dir, texts, cfg)
    size = model_size_bytes(model_dir, kind)
    memory = {
        "peak_rss_mb": measured["peak_rss"] / 1e6,
        "model_load_rss_mb": (measured["rss_after_load"] - measured["rss_before_load"]) / 1e6,
    }
    results = {}
    for dataset, frame in datasets.items():
        m = measured["datasets"][dataset]
        results[dataset] = {
            "variant": name,
            "dataset": dataset,
            **classification_metrics(frame["label"].to_numpy(), m["labels"], cfg.bootstrap_resamples, cfg.seed),
            "latency": {**latency_percentiles(m["latencies"]), "samples": len(m["latencies"])}
            if m["latencies"]
            else {},
            "model_size_mb": size / 1e6,
            **memory,
            "batch_size": cfg.batch_size,
            "threads": cfg.threads,
        }
    return results
