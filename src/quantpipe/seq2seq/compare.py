"""Compare seq2seq models: the paired speed ratios of their side-by-side timings
(`quantpipe.side_by_side.time_generate_side_by_side`) and their quality against the references and the fp32
model's outputs."""

from __future__ import annotations

from quantpipe.errors import QuantpipeError
from quantpipe.seq2seq.quality import generation_quality
from quantpipe.statistics import latency_percentiles, paired_ratio


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
