"""The seq2seq comparison: one row per model (quality, speed side by side, memory, size) as metrics/seq2seq.json
and the markdown report."""

from __future__ import annotations

from quantpipe.config.constants import SEQ2SEQ_BASELINE as BASELINE
from quantpipe.rendering import cpu_line

METRIC_NAMES = {"chrf": "chrF", "rouge_l": "ROUGE-L F1 x 100"}


def summary(
    evals: dict[str, dict],
    quality: dict[str, dict],
    ratios: dict[str, dict],
    ratios_no_cache: dict[str, dict],
    by_reference: dict[str, dict[str, dict]],
) -> dict[str, dict]:
    """Per model, the figures `dvc metrics` compares (rounded); speed ratios against PyTorch with its key/value
    cache (`ratios`), without it (`ratios_no_cache`) and against each reference variant (`by_reference`:
    reference -> ratios), and its RSS after load over PyTorch fp32's."""
    out = {}
    for name, ev in evals.items():
        mem, q, r = ev["memory"], quality[name], ratios[name]
        no_cache = ratios_no_cache[name]["call_p50_speedup"]
        out[name] = {
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


def answer_lines(rows: dict[str, dict], budget: float, references: list[str], metric: str) -> list[str]:
    """The report's answer: the fastest model within budget, by how much it beats PyTorch fp32 and each reference,
    its batched throughput and its memory."""
    best = answer(rows, budget)
    if best is None:
        return [f"No model is within {budget:g} {metric} point(s) of PyTorch fp32."]
    r = rows[best]
    line = (
        f"**Answer: {best}** ({r['serving']}), the fastest per call within {budget:g} {metric} point(s) of PyTorch fp32 "
        f"(Δ {r['quality_delta']:+.2f} [{r['quality_delta_ci_low']:+.2f}, {r['quality_delta_ci_high']:+.2f}]): "
        f"{r['call_speedup_median']:.2f}x [{r['call_speedup_min']:.2f}, {r['call_speedup_max']:.2f}] PyTorch fp32 per "
        "call"
    )
    for ref in references:
        if f"call_speedup_vs_{ref}_median" in r and ref != best:
            line += (
                f", {r[f'call_speedup_vs_{ref}_median']:.2f}x [{r[f'call_speedup_vs_{ref}_min']:.2f}, "
                f"{r[f'call_speedup_vs_{ref}_max']:.2f}] {ref}"
            )
    line += f"; batched tokens/s {r['tokens_per_second_ratio_median']:.2f}x PyTorch fp32's"
    if "rss_after_load_ratio" in r:
        line += f"; RSS after load {r['rss_after_load_mb']:.0f} MB, {r['rss_after_load_ratio']:.2f}x PyTorch fp32's"
    return [line + f", one call +{r['one_call_increment_mb']:.1f} MB."]


def served_by(served: dict) -> str:
    """The kind that served a model with its threads: `dynamic, 1 thread`; with streams, each stream's share
    (what a per-call latency ran on): `openvino, 2 streams x 1 thread`."""
    streams, threads = served.get("streams", 1), served["threads"]
    per_stream = threads // streams
    share = f"{per_stream} thread{'s' if per_stream > 1 else ''}"
    return f"{served['kind']}, " + (f"{streams} streams x {share}" if streams > 1 else share)


def markdown(rows: dict[str, dict], timings: dict[str, dict], environment: dict | None, cfg, examples: int) -> str:
    lines = ["# quantpipe seq2seq comparison", ""]
    if environment:
        lines += [cpu_line(environment["cpu"]), ""]
    rounds = len(next(iter(timings.values()))["examples_per_second"])
    metric = METRIC_NAMES[cfg.metric]
    lines += [
        f"Greedy decoding of at most {cfg.max_new_tokens} new tokens. Quality: {metric} (0-100) of the {examples} eval",
        "outputs (each stopping at its end token) against the references, mean with a bootstrap 95% CI; Δ: minus",
        "PyTorch fp32's, paired per example, in points, bootstrap 95% CI; identical: the share of outputs equal to",
        f"PyTorch fp32's. Speed: all models in one process, {rounds} rounds in a balanced order; per-call speed-up:",
        "PyTorch fp32's p50 latency at batch size 1 divided by the model's, round by round, median [min, max];",
        f"tokens/s: batches of {cfg.batch_size} (a model with streams runs that many batches at once); every timed",
        f"call makes exactly {cfg.max_new_tokens} tokens, on {cfg.threads} threads unless its row says. PyTorch",
        "generates with its key/value cache (transformers' default); the no-cache column divides",
        "pytorch_fp32_no_cache's p50 instead (the prefix recomputed at each step). The ONNX Runtime and OpenVINO",
        "models decode with their cache, in numpy (`quantpipe.seq2seq.lean`, neither torch nor transformers",
        "imported). Memory: each model in its own fresh process: RSS after loading, the increment of the first call",
        "and of a later one (memory_profiler-style), the peak.",
        "",
        (
            f"| model | served by | {metric} [95% CI] | Δ points [95% CI] | identical | p50/p95/p99 ms | per-call speed-up"
            " | vs no cache | tokens/s ratio | size MB (encoder / decoders; PyTorch: one file) | RSS after load MB"
            " | first / later call +MB | peak RSS MB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["call_speedup_median"]):
        files = sorted((k for k in r if k.startswith("size_mb_")), key=lambda k: "encoder" not in k)  # encoder first
        parts = " / ".join(f"{r[k]:.1f}" for k in files)
        lines.append(
            f"| {name} | {r['serving']} | {r['quality']:.2f} [{r['quality_ci_low']:.2f}, {r['quality_ci_high']:.2f}] "
            f"| {r['quality_delta']:+.2f} [{r['quality_delta_ci_low']:+.2f}, "
            f"{r['quality_delta_ci_high']:+.2f}] | {r['identical_to_fp32']:.2f} | {r['p50_ms']:.0f}/{r['p95_ms']:.0f}/{r['p99_ms']:.0f} "
            f"| {r['call_speedup_median']:.2f}x [{r['call_speedup_min']:.2f}, {r['call_speedup_max']:.2f}] "
            f"| {r['call_speedup_no_cache_median']:.2f}x [{r['call_speedup_no_cache_min']:.2f}, "
            f"{r['call_speedup_no_cache_max']:.2f}] | {r['tokens_per_second_ratio_median']:.2f}x | {r['size_mb']:.1f} ({parts or '-'}) "
            f"| {r['rss_after_load_mb']:.0f} | {r['first_call_increment_mb']:.1f} / {r['one_call_increment_mb']:.1f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", *answer_lines(rows, cfg.budget, cfg.references, metric)]
    base = rows.get(BASELINE)
    if base:
        lines += [
            "",
            (
                f"Does the model read its input? PyTorch fp32's outputs score {metric} {base['quality']:.2f} against "
                f"their own references and {base['quality_shuffled']:.2f} against those of other inputs (a seeded "
                "shuffle)."
            ),
        ]
    return "\n".join(lines) + "\n"
