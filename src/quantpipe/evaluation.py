"""Evaluate one model (a baseline or a variant, of any kind) on the evaluation datasets.

Predictions, batch-size-1 latencies, load time and memory come from a fresh process that serves only this
model (`quantpipe.serving`); the parent scores the predictions. Throughput is timed in the side_by_side
stage, every model in one process.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.io import VARIANT_FILE, read_json
from quantpipe.kinds.base import Kind
from quantpipe.metrics import classification_metrics
from quantpipe.serving import serve_in_child
from quantpipe.statistics import latency_percentiles


def evaluate_model(
    name: str,
    kind: Kind,
    variant: VariantParams,
    model_dir: Path,
    tokenizer_dir: Path,
    datasets: dict[str, pd.DataFrame],
    cfg: EvaluateParams,
) -> dict[str, dict]:
    """Metrics with confidence intervals, batch-size-1 latency percentiles, size, load time and memory per
    dataset, and what the build resolved (a preset picked for this CPU, ...). Each dataset's dict also holds
    `labels`, the predicted labels in the order of the texts, which the stage writes apart from the metrics.

    A variant the quantize stage skipped on this CPU (`"skipped": reason` in its VARIANT_FILE) is not served:
    per dataset only its name, kind, dataset and the reason, and no labels."""
    built = Path(model_dir) / VARIANT_FILE
    recorded = read_json(built, expect=dict) if built.is_file() else {}
    if "skipped" in recorded:
        return {
            dataset: {
                "variant": name,
                "kind": kind.name,
                "dataset": dataset,
                "skipped": recorded["skipped"],
                "labels": [],
            }
            for dataset in datasets
        }
    if cfg.max_samples:
        datasets = {k: v.head(cfg.max_samples) for k, v in datasets.items()}
    texts = {k: v["text"].tolist() for k, v in datasets.items()}
    served = serve_in_child(kind, variant, model_dir, tokenizer_dir, texts, cfg)
    resolved = recorded.get("resolved", {})
    results = {}
    for dataset, frame in datasets.items():
        m = served["datasets"][dataset]
        results[dataset] = {
            "variant": name,
            "kind": kind.name,
            "dataset": dataset,
            **classification_metrics(frame["label"].to_numpy(), m["labels"], cfg.bootstrap_resamples, cfg.seed),
            "latency": {**latency_percentiles(m["latencies"]), "samples": len(m["latencies"])}
            if m["latencies"]
            else {},
            "model_size_mb": kind.size_bytes(model_dir) / 1e6,
            **served["memory"],
            "resolved": resolved,
            "batch_size": cfg.batch_size,
            "threads": cfg.threads,
            "model": variant.model,
            "max_length": variant.length_policy(cfg).max_length,
            "truncation": variant.length_policy(cfg).truncation,
            "labels": [int(label) for label in m["labels"]],
        }
    return results
