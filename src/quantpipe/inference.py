"""The inference harness: one way to run a PyTorch or ONNX classifier over a list of texts.

Texts are tokenized once, sorted by length and padded per batch (dynamic padding); predictions are
returned in the original order. Tokenization is timed separately from the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from quantpipe.errors import QuantpipeError

GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxClassifier:
    """An ONNX Runtime session over `model.onnx`, with the CPU session options that matter from params."""

    def __init__(
        self, model_path: Path, threads: int, graph_optimization: str = "all", execution_mode: str = "sequential"
    ):
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise QuantpipeError(f"{model_path}: ONNX model not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_optimization])
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}
        return self.session.run(None, feed)[0]


class TorchClassifier:
    """The fp32 PyTorch model, in inference mode."""

    def __init__(self, model_dir: Path, threads: int):
        import torch
        from transformers import AutoModelForSequenceClassification

        if not (Path(model_dir) / "config.json").is_file():
            raise QuantpipeError(f"{model_dir}: PyTorch model not found")
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with self.torch.inference_mode():
            inputs = {k: self.torch.from_numpy(v) for k, v in batch.items()}
            return self.model(**inputs).logits.numpy()


@dataclass
class Prediction:
    labels: np.ndarray
    tokenize_seconds: float
    model_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.tokenize_seconds + self.model_seconds


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), covering every index once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def single_example_latencies(classifier, tokenizer, texts: list[str], max_length: int, desc: str = "") -> list[float]:
    """Seconds per call at batch size 1, tokenization included: the way a service calls the model."""
    seconds = []
    for text in tqdm(texts, desc=desc, unit="text", leave=False, disable=not desc):
        start = time.perf_counter()
        classifier(dict(tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")))
        seconds.append(time.perf_counter() - start)
    return seconds


def predict(classifier, tokenizer, texts: list[str], batch_size: int, max_length: int, desc: str = "") -> Prediction:
    """Predicted class per text, in the input order; tokenization and model time measured apart."""
    start = time.perf_counter()
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    tokenize_seconds = time.perf_counter() - start
    features = [dict(zip(encoded.keys(), values)) for values in zip(*encoded.values())]
    labels = np.empty(len(texts), dtype=np.int64)
    model_seconds = 0.0
    for idx in tqdm(
        length_sorted_batches([len(ids) for ids in encoded["input_ids"]], batch_size),
        desc=desc,
        unit="batch",
        leave=False,
        disable=not desc,
    ):
        start = time.perf_counter()
        batch = tokenizer.pad([features[i] for i in idx], return_tensors="np")
        labels[idx] = classifier(dict(batch)).argmax(axis=-1)
        model_seconds += time.perf_counter() - start
    return Prediction(labels, tokenize_seconds, model_seconds)


def check_max_length(model_dir: str | Path, max_length: int, param: str) -> None:
    """Refuse a `max_length` above the model's position limit (config.json `max_position_embeddings`,
    tokenizer_config.json `model_max_length`, the smaller): longer inputs would fail deep inside the model."""
    limits = []
    for file, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        path = Path(model_dir) / file
        value = json.loads(path.read_text()).get(key) if path.is_file() else None
        if isinstance(value, int):
            limits.append((value, str(path), key))
    if limits and max_length > min(limits)[0]:
        limit, path, key = min(limits)
        raise QuantpipeError(f"{param}: {max_length} exceeds the model's position limit {limit} ({path} {key})")
