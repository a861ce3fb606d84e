"""The inference harness: one way to run any kind's runtime (`quantpipe.kinds`) over a list of texts.

Texts are tokenized once, sorted by length and padded per batch (dynamic padding); predictions are
returned in the original order. Tokenization is timed separately from the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from quantpipe.config.sections import LengthPolicy
from quantpipe.errors import QuantpipeError
from quantpipe.io import loading, read_json


class Tokenizer:
    """The model's fast tokenizer (`tokenizer.json`) through the `tokenizers` library alone, so that a
    process serving an ONNX Runtime or OpenVINO model imports neither transformers nor torch. It gives the
    same ids, masks and padding as transformers' fast tokenizer built from the same file."""

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer as Fast

        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise QuantpipeError(f"{path}: tokenizer not found")
        with loading(path, "tokenizer"):
            self.fast = Fast.from_file(str(path))
        self.fast.no_padding()
        config = Path(model_dir) / "tokenizer_config.json"
        pad = read_json(config, expect=dict).get("pad_token") if config.is_file() else None
        pad_id = self.fast.token_to_id(pad) if isinstance(pad, str) else None
        self.pad_values = {"input_ids": pad_id or 0, "attention_mask": 0, "token_type_ids": 0}

    def encode(self, texts: list[str], length: int | LengthPolicy) -> list[dict[str, list[int]]]:
        """Token ids, attention mask and token types per text, unpadded, cut to the length policy (an int: that
        many tokens, the head kept); special tokens included and always kept. The one place a policy is applied."""
        policy = LengthPolicy(*length) if isinstance(length, tuple) else LengthPolicy(length)
        if policy.truncation == "head":
            self.fast.enable_truncation(policy.max_length)
            return [
                {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
                for e in self.fast.encode_batch(texts)
            ]
        self.fast.no_truncation()
        return [_head_tail_features(e, policy.max_length) for e in self.fast.encode_batch(texts)]

    def pad(self, features: list[dict[str, list[int]]]) -> dict[str, np.ndarray]:
        """One int64 array per input, right-padded to the longest feature."""
        width = max(len(f["input_ids"]) for f in features)
        return {
            key: np.array([f[key] + [value] * (width - len(f[key])) for f in features], dtype=np.int64)
            for key, value in self.pad_values.items()
        }


def _head_tail_features(encoding, max_length: int) -> dict[str, list[int]]:
    """One encoding's features cut by `head_tail`; each of its lists is read once (`tokenizers` builds a new list
    at every access)."""
    keep = head_tail(encoding.special_tokens_mask, max_length)
    features = {
        "input_ids": encoding.ids,
        "attention_mask": encoding.attention_mask,
        "token_type_ids": encoding.type_ids,
    }
    return {key: [values[i] for i in keep] for key, values in features.items()}


def head_tail(special_tokens_mask: list[int], max_length: int) -> range | list[int]:
    """The positions a `head_tail` cut keeps of one encoded text (`special_tokens_mask`: 1 for a special token):
    the leading and trailing special tokens, then of the text's tokens the first half of the budget left (the
    larger half when it is odd) and the last half (Sun et al. 2019: head+tail reads long reviews best)."""
    n = len(special_tokens_mask)
    if n <= max_length:
        return range(n)
    lead = next((i for i, s in enumerate(special_tokens_mask) if not s), n)
    trail = next((i for i, s in enumerate(reversed(special_tokens_mask)) if not s), 0)
    budget = max(0, max_length - lead - trail)
    head, tail = (budget + 1) // 2, budget // 2
    return [*range(lead + head), *range(n - trail - tail, n)]


class Concurrent:
    """A runtime that answers several batches at once (`streams` of them in flight); called with one batch, it
    answers that batch alone, the way one caller at a time sees it."""

    streams: int
    input_names: set[str]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def map(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The logits of every batch, in order."""
        raise NotImplementedError


class Replicas(Concurrent):
    """`len(replicas)` copies of a runtime (sessions of a share of the threads each, or one thread-safe model),
    each called from its own thread over every `streams`-th batch."""

    def __init__(self, replicas: list[Callable]):
        self.replicas = replicas
        self.streams = len(replicas)
        self.input_names = replicas[0].input_names
        self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="stream")

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.replicas[0](batch)

    def map(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return strided_map(self.pool, self.replicas, batches)


def strided_map(pool: ThreadPoolExecutor, workers: list[Callable], items: list) -> list:
    """Each of `workers` called on every `len(workers)`-th item (worker i on items i, i + n, ...), the workers
    at once on `pool`'s threads; the results in the items' order."""
    n = len(workers)
    shares = [pool.submit(lambda run, part: [run(x) for x in part], run, items[i::n]) for i, run in enumerate(workers)]
    out: list = [None] * len(items)
    for i, share in enumerate(shares):
        out[i::n] = share.result()
    return out


def threads_per_stream(threads: int, streams: int) -> int:
    """The intra-op threads of each of `streams` concurrent inferences sharing `threads` (at least 1)."""
    return max(1, threads // streams)


@dataclass
class Prediction:
    labels: np.ndarray
    scores: np.ndarray  # the softmax probability of each predicted label
    tokenize_seconds: float
    model_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.tokenize_seconds + self.model_seconds


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), covering every index once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def single_example_latencies(
    classifier, tokenizer: Tokenizer, texts: list[str], length: int | LengthPolicy, desc: str = ""
) -> list[float]:
    """Seconds per call at batch size 1, tokenization included: the way a service calls the model."""
    seconds = []
    for text in tqdm(texts, desc=desc, unit="text", leave=False, disable=not desc):
        start = time.perf_counter()
        classifier(tokenizer.pad(tokenizer.encode([text], length)))
        seconds.append(time.perf_counter() - start)
    return seconds


def predict(
    classifier, tokenizer: Tokenizer, texts: list[str], batch_size: int, length: int | LengthPolicy, desc: str = ""
) -> Prediction:
    """Predicted class per text, in the input order, each text cut to `length` (a `LengthPolicy`, or a number of
    tokens: the head kept); tokenization and model time measured apart."""
    start = time.perf_counter()
    features = tokenizer.encode(texts, length)
    tokenize_seconds = time.perf_counter() - start
    labels, scores = np.empty(len(texts), dtype=np.int64), np.empty(len(texts), dtype=np.float32)
    batches = length_sorted_batches([len(f["input_ids"]) for f in features], batch_size)
    if isinstance(classifier, Concurrent):  # every batch handed over at once: `streams` of them in flight
        start = time.perf_counter()
        logits = classifier.map([tokenizer.pad([features[i] for i in idx]) for idx in batches])
        model_seconds = time.perf_counter() - start
        for idx, out in zip(batches, logits):
            labels[idx], scores[idx] = label_scores(out)
        return Prediction(labels, scores, tokenize_seconds, model_seconds)
    model_seconds = 0.0
    for idx in tqdm(batches, desc=desc, unit="batch", leave=False, disable=not desc):
        start = time.perf_counter()
        out = classifier(tokenizer.pad([features[i] for i in idx]))
        model_seconds += time.perf_counter() - start
        labels[idx], scores[idx] = label_scores(out)
    return Prediction(labels, scores, tokenize_seconds, model_seconds)


def label_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `logits`: the predicted class and its softmax probability."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return logits.argmax(axis=-1), (shifted.max(axis=-1) / shifted.sum(axis=-1)).astype(np.float32)


def check_max_length(model_dir: str | Path, max_length: int, param: str) -> None:
    """Refuse a `max_length` above the model's position limit (config.json `max_position_embeddings`,
    tokenizer_config.json `model_max_length`, the smaller): longer inputs would fail deep inside the model."""
    limits = []
    for file, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        path = Path(model_dir) / file
        value = read_json(path, expect=dict).get(key) if path.is_file() else None
        if isinstance(value, int):
            limits.append((value, str(path), key))
    if limits and max_length > min(limits)[0]:
        limit, path, key = min(limits)
        raise QuantpipeError(f"{param}: {max_length} exceeds the model's position limit {limit} ({path} {key})")
