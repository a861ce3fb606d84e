"""Compare seq2seq models: every served model side by side in one process (per-call latency and batched
throughput, round after round, in the balanced order of `quantpipe.side_by_side.round_order`), their paired
speed ratios, and quality against the references and the fp32 model's outputs."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from quantpipe.errors import QuantpipeError
from quantpipe.seq2seq.generation import call_latencies, generate_texts
from quantpipe.seq2seq.quality import generation_quality
from quantpipe.side_by_side import round_order
from quantpipe.statistics import latency_percentiles, paired_ratio


def time_generate_side_by_side(
    models: dict[str, object],
    texts: list[str],
    max_new_tokens: int,
    batch_size: int,
    rounds: int,
    desc: str = "rounds",
) -> dict[str, dict]:
    """Every served model of `models` (`load_seq2seq`) timed in this process, `rounds` times, in the balanced order of
    `quantpipe.side_by_side.round_order`. Each round and model: the seconds of each call one text at a time
    (`call_seconds`, one list per round), then one pass over the texts in batches of `batch_size`
    (`examples_per_second`, `tokens_per_second`, `generated_tokens`, one value per round). Every call generates
    exactly `max_new_tokens` tokens, so all models do the same work. Each model first makes one untimed call
    and one untimed batch."""
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
    for r in tqdm(range(rounds), desc=desc, unit="round"):
        for name in round_order(list(models), r):
            out[name]["call_seconds"].append(calls(name, texts))
            start = time.perf_counter()
            tokens = sum(batched(name, texts).new_tokens)
            seconds = time.perf_counter() - start
            out[name]["examples_per_second"].append(len(texts) / seconds)
            out[name]["tokens_per_second"].append(tokens / seconds)
            out[name]["generated_tokens"].append(tokens)
    return out


def ratios_to_baseline(timings: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Per model of `time_generate_side_by_side`'s result, its paired ratios to `baseline` over the rounds
    (median, min, max; above 1 is faster): examples/s and tokens/s divided by the baseline's, and the per-call
    speedup, the baseline's p50 latency divided by the model's."""
    _check_baseline(baseline, timings)

    def p50(name: str) -> list[float]:
        return [latency_percentiles(seconds)["p50_ms"] for seconds in timings[name]["call_seconds"]]

    return {
        name: {
            "examples_per_second": paired_ratio(runs["examples_per_second"], timings[baseline]["examples_per_second"]),
            "tokens_per_second": paired_ratio(runs["tokens_per_second"], timings[baseline]["tokens_per_second"]),
            "call_p50_speedup": paired_ratio(p50(baseline), p50(name)),
        }
        for name, runs in timings.items()
    }


def quality_by_model(
    references: list[str], outputs: dict[str, list[str]], baseline: str, metric: str, n_resamples: int, seed: int
) -> dict[str, dict]:
    """Per model: its `metric` score against `references` with a bootstrap 95% CI, its paired difference to the
    `baseline` model's (the fp32 model's) and the fraction of its outputs identical to that model's."""
    _check_baseline(baseline, outputs)
    return {
        name: generation_quality(texts, references, metric, n_resamples, seed, reference_outputs=outputs[baseline])
        for name, texts in outputs.items()
    }


def _check_baseline(baseline: str, models: dict) -> None:
    if baseline not in models:
        raise QuantpipeError(f"baseline '{baseline}' is not among the models measured ({', '.join(models)})")
