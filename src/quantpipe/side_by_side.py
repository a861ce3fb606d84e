"""Every model timed in one process, in rounds that alternate between them (classify: batched passes over the
texts; generate: calls one text at a time, then a batched pass).

Timing each model in its own stage, one after the other, lets a change in the machine's load decide
between two models of nearly equal speed. Here each round times every model once over the same texts,
in an order from a balanced design (each model in each position, after each other model, equally often),
and the report divides
the models' speeds round by round: a load change inside the run shifts every model of a round alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from quantpipe.config.sections import EvaluateParams, LengthPolicy
from quantpipe.errors import QuantpipeError
from quantpipe.inference import predict
from quantpipe.seq2seq.generation import call_latencies, generate_texts


def round_orders(names: list[str]) -> list[list[str]]:
    """A Williams design: `len(names)` orders (twice that for an odd count) in which every model runs once
    in each position and right after every other model equally often, so neither a position nor a
    neighbour (one still spinning down, or one that left the caches cold) favours any model."""
    n = len(names)
    first = [0]
    for k in range(1, n):  # 0, 1, n-1, 2, n-2, ...
        first.append((k + 1) // 2 if k % 2 else n - k // 2)
    orders = [[names[(i + shift) % n] for i in first] for shift in range(n)]
    return orders + [order[::-1] for order in orders] if n % 2 else orders


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order of round `round_index`, cycling through `round_orders(names)`."""
    orders = round_orders(names)
    return orders[round_index % len(orders)]


def time_side_by_side(
    classifiers: dict[str, Callable],
    tokenizer,
    texts: list[str],
    cfg: EvaluateParams,
    rounds: int,
    desc: str = "rounds",
    warmup_batches: int = 2,
    lengths: dict[str, LengthPolicy] | None = None,
    slices: int = 1,
) -> dict[str, dict]:
    """Per model: samples/s per round, with tokenization (`samples_per_second`) and without it
    (`model_samples_per_second`), and its predictions. Each model reads the texts cut by its length policy
    (`lengths`; by default `cfg.max_length`, the head kept). Each model is first warmed up on `warmup_batches`
    batches (untimed); its first timed round gives the predictions every later round must repeat.

    With `slices` > 1 the texts are cut into that many consecutive slices and a round runs every model on the
    first slice, then every model on the second, ... (each slice in the next order of the balanced design): a
    model's round time is the sum over the slices, and two models' times are paired at the scale of one slice,
    so a change in the machine's load within the round weighs on both alike."""
    names = list(classifiers)
    if not texts:
        raise QuantpipeError("side by side: no texts to time (empty split, or max_samples 0)")
    length = {name: (lengths or {}).get(name, LengthPolicy(cfg.max_length)) for name in names}
    warmup = texts[: cfg.batch_size * warmup_batches]
    for name in names:
        predict(classifiers[name], tokenizer, warmup, cfg.batch_size, length[name])
    parts = [[texts[i] for i in part] for part in np.array_split(np.arange(len(texts)), min(slices, len(texts)))]
    out = {name: {"labels": None, "samples_per_second": [], "model_samples_per_second": []} for name in names}

    for r in tqdm(range(rounds), desc=desc, unit="round"):
        seconds = {name: [0.0, 0.0] for name in names}
        labels: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for k, part in enumerate(parts):
            for name in round_order(names, r * len(parts) + k):
                run = predict(classifiers[name], tokenizer, part, cfg.batch_size, length[name])
                seconds[name][0] += run.total_seconds
                seconds[name][1] += run.model_seconds
                labels[name].append(run.labels)
        for name in names:
            predicted = np.concatenate(labels[name])
            if out[name]["labels"] is None:
                out[name]["labels"] = predicted
            elif not np.array_equal(predicted, out[name]["labels"]):
                raise RuntimeError(f"{name}: predictions differ between rounds")
            out[name]["samples_per_second"].append(len(texts) / seconds[name][0])
            out[name]["model_samples_per_second"].append(len(texts) / seconds[name][1])
    return out


def time_in_rounds(names: list[str], one_pass: Callable[[str], None], rounds: int, desc: str) -> None:
    """`one_pass` of every model, `rounds` times, each round in the order `round_order` gives it (the generation
    models' timing)."""
    for r in tqdm(range(rounds), desc=desc, unit="round"):
        for name in round_order(names, r):
            one_pass(name)


def time_generate_side_by_side(
    models: dict[str, object],
    texts: list[str],
    max_new_tokens: int,
    batch_size: int,
    rounds: int,
    desc: str = "rounds",
) -> dict[str, dict]:
    """Every served seq2seq model of `models` (a kind's `load_generate`) timed in this process, `rounds` times.
    Each round and model: the seconds of each call one text at a time (`call_seconds`, one list per round), then
    one pass over the texts in batches of `batch_size` (`examples_per_second`, `tokens_per_second`,
    `generated_tokens`, one value per round). Every call generates exactly `max_new_tokens` tokens, so all models
    do the same work. Each model first makes one untimed call and one untimed batch."""
    if not texts or rounds < 1:
        raise QuantpipeError(f"side by side: {len(texts)} texts, {rounds} rounds (need at least 1 each)")

    def calls(name: str, items: list[str]) -> list[float]:
        return call_latencies(models[name], items, max_new_tokens, fixed_length=True)

    def batched(name: str, items: list[str]):
        return generate_texts(models[name], items, max_new_tokens, batch_size, fixed_length=True)

    for name in models:
        calls(name, texts[:1])
        batched(name, texts[:batch_size])
    keys = ("call_seconds", "examples_per_second", "tokens_per_second", "generated_tokens")
    out = {name: {key: [] for key in keys} for name in models}

    def one_pass(name: str) -> None:
        out[name]["call_seconds"].append(calls(name, texts))
        start = time.perf_counter()
        tokens = sum(batched(name, texts).new_tokens)
        seconds = time.perf_counter() - start
        out[name]["examples_per_second"].append(len(texts) / seconds)
        out[name]["tokens_per_second"].append(tokens / seconds)
        out[name]["generated_tokens"].append(tokens)

    time_in_rounds(list(models), one_pass, rounds, desc)
    return out
