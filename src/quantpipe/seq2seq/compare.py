"""Compare seq2seq models: the paired speed ratios of their side-by-side timings
(`quantpipe.side_by_side.time_generate_side_by_side`), their quality against the references and the fp32
model's outputs, one row per model (metrics/seq2seq.json) and the answer; `quantpipe.rendering` writes the
report."""

from __future__ import annotations

from quantpipe.config.constants import SEQ2SEQ_BASELINE as BASELINE
from quantpipe.errors import QuantpipeError
from quantpipe.inference import threads_per_stream
from quantpipe.seq2seq.quality import chrf, generation_quality, punctuation_scores
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


COPY = "copy_source"  # doing nothing: the source itself as the output


def task_fields(outputs: list[str], references: list[str], sources: list[str]) -> dict:
    """Punctuation restoration's own scores (`punctuation_scores`) and chrF, as the rows of metrics/seq2seq.json
    hold them (rounded): chrF stays beside whichever metric the budget applies to."""
    scores = punctuation_scores(outputs, references, sources)
    return {
        "chrf": round(float(chrf(outputs, references).mean()), 2),
        "punctuation_precision": round(scores["precision"], 4),
        "punctuation_recall": round(scores["recall"], 4),
        "punctuation_f1": round(scores["f1"], 4),
        "words_kept": round(scores["words_kept"], 4),
    }


def task_scores(outputs: dict[str, list[str]], references: list[str], sources: list[str]) -> dict[str, dict]:
    """Per model, punctuation restoration's own scores and chrF (`task_fields`)."""
    return {name: task_fields(texts, references, sources) for name, texts in outputs.items()}


def copy_baseline(sources: list[str], references: list[str], metric: str, n_resamples: int, seed: int) -> dict:
    """The row of doing nothing: each source copied as its output, scored like a model's outputs (`metric` with
    its bootstrap 95% CI) and by the task's scores."""
    quality = generation_quality(sources, references, metric, n_resamples, seed)
    return {
        "quality": round(quality["score"], 2),
        "quality_ci_low": round(quality["score_ci"][0], 2),
        "quality_ci_high": round(quality["score_ci"][1], 2),
        **task_fields(sources, references, sources),
    }


def summary(
    evals: dict[str, dict],
    quality: dict[str, dict],
    ratios: dict[str, dict],
    ratios_no_cache: dict[str, dict],
    by_reference: dict[str, dict[str, dict]],
    task: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Per model, the figures `dvc metrics` compares (rounded); speed ratios against PyTorch with its key/value
    cache (`ratios`), without it (`ratios_no_cache`) and against each reference variant (`by_reference`:
    reference -> ratios), its RSS after load over PyTorch fp32's, and the task's own scores (`task_scores`)."""
    out = {}
    for name, ev in evals.items():
        mem, q, r = ev["memory"], quality[name], ratios[name]
        no_cache = ratios_no_cache[name]["call_p50_speedup"]
        out[name] = {
            **(task or {}).get(name, {}),
            "quality": round(q["score"], 2),
            "quality_ci_low": round(q["score_ci"][0], 2),
            "quality_ci_high": round(q["score_ci"][1], 2),
            "quality_shuffled": round(q["score_shuffled"], 2),
            "identical_to_fp32": round(q["identical_to_reference"], 4),
            "quality_delta": round(q["delta"], 2),
            "quality_delta_ci_low": round(q["delta_ci"][0], 2),
            "quality_delta_ci_high": round(q["delta_ci"][1], 2),
            "p50_ms": round(ev["latency"]["p50_ms"], 2),
            "p95_ms": round(ev["latency"]["p95_ms"], 2),
            "p99_ms": round(ev["latency"]["p99_ms"], 2),
            **{f"call_speedup_{k}": round(v, 4) for k, v in r["call_p50_speedup"].items()},
            **{f"call_speedup_no_cache_{k}": round(v, 4) for k, v in no_cache.items()},
            **{f"tokens_per_second_ratio_{k}": round(v, 4) for k, v in r["tokens_per_second"].items()},
            "size_mb": round(sum(ev["files_mb"].values()), 2),
            **{f"size_mb_{file.removesuffix('.onnx')}": round(mb, 2) for file, mb in ev["files_mb"].items()},
            "rss_after_load_mb": round(mem["rss_after_load_mb"], 1),
            "first_call_increment_mb": round(mem["first_call_increment_mb"], 2),
            "one_call_increment_mb": round(mem["one_call_increment_mb"], 2),
            "peak_rss_mb": round(mem["peak_rss_mb"], 1),
            "torch_imported": mem["torch_imported"],
            "serving": served_by(ev["served_by"]),
            **{
                f"call_speedup_vs_{ref}_{k}": round(v, 4)
                for ref, against in by_reference.items()
                for k, v in against[name]["call_p50_speedup"].items()
            },
            **{
                f"tokens_per_second_vs_{ref}": round(against[name]["tokens_per_second"]["median"], 4)
                for ref, against in by_reference.items()
            },
        }
    base = out.get(BASELINE)
    for row in out.values():
        if base:
            row["rss_after_load_ratio"] = round(row["rss_after_load_mb"] / base["rss_after_load_mb"], 4)
    return out


def answer(rows: dict[str, dict], budget: float) -> str | None:
    """The model with the highest median per-call speed-up whose quality is within `budget` points of PyTorch
    fp32's (its mean paired difference), None if there is none."""
    within = [name for name, row in rows.items() if row["quality_delta"] >= -budget]
    return max(within, key=lambda name: rows[name]["call_speedup_median"], default=None)


def served_by(served: dict) -> str:
    """The kind that served a model with its threads: `dynamic, 1 thread`; with streams, each stream's share
    (what a per-call latency ran on): `openvino, 2 streams x 1 thread`."""
    streams, threads = served.get("streams", 1), served["threads"]
    per_stream = threads_per_stream(threads, streams)
    share = f"{per_stream} thread{'s' if per_stream > 1 else ''}"
    return f"{served['kind']}, " + (f"{streams} streams x {share}" if streams > 1 else share)


def _check_baseline(baseline: str, models: dict) -> None:
    if baseline not in models:
        raise QuantpipeError(f"baseline '{baseline}' is not among the models measured ({', '.join(models)})")
