"""The seq2seq comparison: one row per model (quality, speed side by side, memory, size) as metrics/seq2seq.json
and the markdown report."""

from __future__ import annotations

from quantpipe.seq2seq.models import BASELINE


def summary(
    evals: dict[str, dict], quality: dict[str, dict], ratios: dict[str, dict], ratios_no_cache: dict[str, dict]
) -> dict[str, dict]:
    """Per model, the figures `dvc metrics` compares (rounded); speed ratios against PyTorch with its key/value
    cache (`ratios`) and without it (`ratios_no_cache`)."""
    out = {}
    for name, ev in evals.items():
        mem, q, r = ev["memory"], quality[name], ratios[name]
        no_cache = ratios_no_cache[name]["call_p50_speedup"]
        out[name] = {
            "rouge_l": round(q["rouge_l"], 4),
            "rouge_l_ci_low": round(q["rouge_l_ci"][0], 4),
            "rouge_l_ci_high": round(q["rouge_l_ci"][1], 4),
            "rouge_l_shuffled": round(q["rouge_l_shuffled"], 4),
            "identical_to_fp32": round(q["identical_to_reference"], 4),
            "rouge_l_delta": round(q["rouge_l_delta"], 4),
            "rouge_l_delta_ci_low": round(q["rouge_l_delta_ci"][0], 4),
            "rouge_l_delta_ci_high": round(q["rouge_l_delta_ci"][1], 4),
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
        }
    return out


def markdown(rows: dict[str, dict], timings: dict[str, dict], environment: dict | None, cfg, examples: int) -> str:
    lines = ["# quantpipe seq2seq comparison", ""]
    if environment:
        cpu = environment["cpu"]
        flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of the tracked flags"
        lines += [f"CPU: **{cpu['model']}**, {cpu['machine']}, {cpu['cores']} cores; flags: {flags}.", ""]
    rounds = len(next(iter(timings.values()))["examples_per_second"])
    lines += [
        f"Greedy decoding of {cfg.max_new_tokens} new tokens. Quality: ROUGE-L F1 of the {examples} eval outputs (each",
        "stopping at its end token) against the references, bootstrap 95% CI; Δ: minus PyTorch fp32's, paired per",
        "example, in ROUGE-L points (x100), bootstrap 95% CI; identical: the share of outputs equal",
        (
            "to PyTorch fp32's. Speed: all models in one process, "
            f"{rounds} rounds in a balanced order; per-call speed-up: PyTorch fp32's p50"
        ),
        (
            f"latency at batch size 1 divided by the model's, round by round, median [min, max]; tokens/s: batches of "
            f"{cfg.batch_size}, exactly {cfg.max_new_tokens} tokens each. PyTorch generates with its key/value cache "
            "(transformers' default);"
        ),
        "the no-cache column divides pytorch_fp32_no_cache's p50 instead (the prefix recomputed at each step): the",
        "equal terms of an ONNX decoder exported without the cache (the warm-started BERT-to-BERT's; T5 has one).",
        "Memory: each model in its own fresh process (ORTModelForSeq2SeqLM imports torch too): RSS after loading,",
        "the increment of the first call and of a later one (memory_profiler-style), the peak.",
        "",
        (
            "| model | ROUGE-L [95% CI] | Δ points [95% CI] | identical | p50/p95/p99 ms | per-call speed-up | vs no cache "
            "| tokens/s ratio | size MB "
            "(encoder / decoder; PyTorch: one file) | RSS after load MB | first / later call +MB | peak RSS MB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["call_speedup_median"]):
        files = sorted((k for k in r if k.startswith("size_mb_")), key=lambda k: "encoder" not in k)  # encoder first
        parts = " / ".join(f"{r[k]:.1f}" for k in files)
        lines.append(
            f"| {name} | {r['rouge_l']:.4f} [{r['rouge_l_ci_low']:.3f}, {r['rouge_l_ci_high']:.3f}] "
            f"| {100 * r['rouge_l_delta']:+.2f} [{100 * r['rouge_l_delta_ci_low']:+.2f}, "
            f"{100 * r['rouge_l_delta_ci_high']:+.2f}] | {r['identical_to_fp32']:.2f} | {r['p50_ms']:.0f}/{r['p95_ms']:.0f}/{r['p99_ms']:.0f} "
            f"| {r['call_speedup_median']:.2f}x [{r['call_speedup_min']:.2f}, {r['call_speedup_max']:.2f}] "
            f"| {r['call_speedup_no_cache_median']:.2f}x [{r['call_speedup_no_cache_min']:.2f}, "
            f"{r['call_speedup_no_cache_max']:.2f}] | {r['tokens_per_second_ratio_median']:.2f}x | {r['size_mb']:.1f} ({parts or '-'}) "
            f"| {r['rss_after_load_mb']:.0f} | {r['first_call_increment_mb']:.1f} / {r['one_call_increment_mb']:.1f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    base = rows.get(BASELINE)
    if base:
        lines += [
            "",
            (
                f"Does the model read its input? PyTorch fp32's outputs score ROUGE-L {base['rouge_l']:.4f} against "
                f"their own references and {base['rouge_l_shuffled']:.4f} against those of other inputs (a seeded "
                "shuffle)."
            ),
        ]
    return "\n".join(lines) + "\n"
