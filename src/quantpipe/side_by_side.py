"""Every model timed in one process, in rounds that alternate between them.

Timing each model in its own stage, one after the other, lets a change in the machine's load decide
between two models of nearly equal speed. Here each round times every model once over the same texts,
in an order from a balanced design (each model in each position, after each other model, equally often),
and the report divides
the models' speeds round by round: a load change inside the run shifts every model of a round alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from quantpipe.config.sections import EvaluateParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import predict


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
) -> dict[str, dict]:
    """Per model: samples/s per round, with tokenization (`samples_per_second`) and without it
    (`model_samples_per_second`), and its predictions. Each model is first warmed up on `warmup_batches`
    batches (untimed); its first timed pass gives the predictions every later pass must repeat."""
    names = list(classifiers)
    if not texts:
        raise QuantpipeError("side by side: no texts to time (empty split, or max_samples 0)")
    warmup = texts[: cfg.batch_size * warmup_batches]
    for name in names:
        predict(classifiers[name], tokenizer, warmup, cfg.batch_size, cfg.max_length)
    out = {name: {"labels": None, "samples_per_second": [], "model_samples_per_second": []} for name in names}
    for r in tqdm(range(rounds), desc=desc, unit="round"):
        for name in round_order(names, r):
            run = predict(classifiers[name], tokenizer, texts, cfg.batch_size, cfg.max_length)
            if out[name]["labels"] is None:
                out[name]["labels"] = run.labels
            elif not np.array_equal(run.labels, out[name]["labels"]):
                raise RuntimeError(f"{name}: predictions differ between passes")
            out[name]["samples_per_second"].append(len(texts) / run.total_seconds)
            out[name]["model_samples_per_second"].append(len(texts) / run.model_seconds)
    return out
