"""Evaluate one model (PyTorch fp32, ONNX fp32 or a quantized variant) on the evaluation datasets."""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd

from quantpipe.inference import OnnxClassifier, TorchClassifier, predict
from quantpipe.metrics import classification_metrics
from quantpipe.params import EvaluateParams


def model_size_bytes(model_dir: Path, kind: str) -> int:
    """Size on disk of the weights (ONNX files, or the PyTorch safetensors/bin)."""
    patterns = ("*.onnx", "*.onnx_data") if kind == "onnx" else ("*.safetensors", "*.bin")
    return sum(f.stat().st_size for pattern in patterns for f in Path(model_dir).glob(pattern))


def load_classifier(kind: str, model_dir: Path, threads: int):
    if kind == "pytorch":
        return TorchClassifier(model_dir, threads)
    return OnnxClassifier(Path(model_dir) / "model.onnx", threads)


def evaluate_model(name: str, kind: str, model_dir: Path, tokenizer_dir: Path,
                   datasets: dict[str, pd.DataFrame], cfg: EvaluateParams) -> dict[str, dict]:
    """Metrics and throughput for one model on each dataset: {dataset: metrics}."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    classifier = load_classifier(kind, model_dir, cfg.threads)
    size = model_size_bytes(model_dir, kind)
    results = {}
    for dataset, frame in datasets.items():
        if cfg.max_samples:
            frame = frame.head(cfg.max_samples)
        texts = frame["text"].tolist()
        predict(classifier, tokenizer, texts[: cfg.batch_size], cfg.batch_size, cfg.max_length)  # warm-up
        pred = predict(classifier, tokenizer, texts, cfg.batch_size, cfg.max_length, desc=f"{name}/{dataset}")
        results[dataset] = {
            "variant": name,
            "dataset": dataset,
            **classification_metrics(frame["label"].to_numpy(), pred.labels),
            "samples_per_second": len(texts) / pred.total_seconds,
            "model_samples_per_second": len(texts) / pred.model_seconds,
            "tokenize_seconds": pred.tokenize_seconds,
            "model_seconds": pred.model_seconds,
            "batch_size": cfg.batch_size,
            "threads": cfg.threads,
            "model_size_mb": size / 1e6,
            "machine": platform.machine(),
        }
    return results
