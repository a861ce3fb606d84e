"""The comparison's rendering: the markdown report, the accuracy-against-throughput image and the data of
`dvc plots`, from the table `quantpipe.analysis` computes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.analysis import pareto_front
from quantpipe.io import write_json


def _fmt_ci(row, name: str) -> str:
    if f"{name}_ci_low" in row and pd.notna(row.get(f"{name}_ci_low")):
        return f"{row[name]:.4f} [{row[f'{name}_ci_low']:.3f}, {row[f'{name}_ci_high']:.3f}]"
    return f"{row[name]:.4f}"


def display_table(group: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in group.iterrows():
        t = r["throughput"]
        latency = r.get("latency") if isinstance(r.get("latency"), dict) else {}
        rows.append(
            {
                "variant": f"**{r['variant']}**" if r["best_within_budget"] else r["variant"],
                "accuracy [95% CI]": _fmt_ci(r, "accuracy"),
                "Δ acc": f"{r['accuracy_delta'] * 100:+.2f} pt",
                "F1 [95% CI]": _fmt_ci(r, "f1"),
                "samples/s [IQR]": f"{t['median']:.1f} [{t['q1']:.1f}, {t['q3']:.1f}]",
                "CV": f"{t.get('cv', 0.0) * 100:.1f}%",
                "speed ratio [range]": f"{r['speed_ratio']:.2f}x [{r['speed_ratio_low']:.2f}, {r['speed_ratio_high']:.2f}]",
                "p50/p95/p99 ms (bs 1)": "/".join(f"{latency[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
                if latency
                else "-",
                "kind": r["kind"],
                "size MB (ratio)": f"{r['model_size_mb']:.1f} ({r['size_ratio']:.2f}x)",
                "peak RSS MB serving / batched (ratios)": f"{r['peak_rss_serving_mb']:.0f} / {r['peak_rss_mb']:.0f} "
                f"({r['peak_rss_serving_ratio']:.2f}x / {r['peak_rss_ratio']:.2f}x)",
                "load s": f"{r['load_seconds']:.2f}",
            }
        )
    return pd.DataFrame(rows)


def markdown_report(
    table: pd.DataFrame,
    baseline: str,
    accuracy_budget: float,
    side_by_side: dict,
    environment: dict | None = None,
    image: str | None = None,
) -> str:
    lines = [
        "# quantpipe comparison",
        "",
        f"Baseline: `{baseline}`. Δ acc and speed ratio are against the baseline on the same dataset;",
        f"**bold** marks the fastest model within {accuracy_budget * 100:g} accuracy point(s) of it.",
        "Throughput and speed ratio come from the side_by_side stage: every model loaded in one process and timed",
        "in rounds over the same texts (tokenization included, length-sorted batches padded per batch), each round",
        "timing each model once, in orders from a Williams design (each model in each position and after each",
        "other model equally often). samples/s: median over the rounds [interquartile range], CV: coefficient of",
        "variation; speed ratio: median of the round-by-round ratios to the baseline [min, max over the rounds].",
        "Accuracy and F1 on the whole split, 95% paired bootstrap intervals. Latency, size, peak RSS, load time: each",
        "model's own evaluate stage, a fresh process that imports only what serving its kind needs (no torch for",
        "ONNX Runtime or OpenVINO). Latency: batch size 1, tokenization included. Peak RSS serving: the high-water",
        "mark after loading, one batch and the texts one at a time; batched: after the whole splits in batches too.",
        "Ratios: against the baseline.",
        "",
    ]
    if environment:
        cpu, versions = environment["cpu"], environment["versions"]
        flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of the tracked flags"
        lines[2:2] = [f"CPU: **{cpu['model']}**, {cpu['machine']}, {cpu['cores']} cores; flags: {flags}.", ""]
        lines += [
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
            "",
        ]
    for dataset, group in table.groupby("dataset", sort=True):
        timed = side_by_side["datasets"][dataset]["examples"]
        lines += [
            f"## {dataset}",
            "",
            (f"{group['n'].max()} examples scored; the first {timed} timed in {side_by_side['rounds']} rounds."),
            "",
            display_table(group).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    if image:
        lines += [f"![accuracy against throughput]({image})", ""]
    return "\n".join(lines)


def sensitivity_markdown(sensitivity: dict) -> str:
    """The sensitivity rows as a section: each part quantized alone, against the fp32 graph."""
    rows = pd.DataFrame(sensitivity["rows"])
    others = rows[~rows["kind"].isin(["none", "all"])]
    table = pd.DataFrame(
        {
            "quantized alone": [
                r["part"] if r["kind"] in ("none", "all") else f"{r['kind']} {r['part']}" for _, r in rows.iterrows()
            ],
            "candidate nodes": rows["nodes"],
            "accuracy": rows["accuracy"].map("{:.4f}".format),
            "Δ acc": (rows["accuracy_delta"] * 100).map("{:+.2f} pt".format),
            "model-only speed vs fp32": rows["speed_ratio"].map("{:.2f}x".format),
        }
    )
    whole = rows.loc[rows["kind"] == "all", "accuracy_delta"]
    lines = [
        f"## Sensitivity of `{sensitivity['variant']}` on {sensitivity['dataset']} ({sensitivity['examples']} examples)",
        "",
        "Each row quantizes only that operator type, or only that part of the network, with the variant's",
        "settings and ranges; `all` is the whole variant. Candidate nodes: nodes of the quantized operator types in",
        "that part (before `nodes_to_exclude` and ONNX Runtime's own skips). Speed: model time only, median of the",
        "repeated passes, alternating between the models in one process, against the fp32 graph.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    if len(whole):
        for kind in ("operator", "layer"):
            part_sum = others.loc[others["kind"] == kind, "accuracy_delta"].sum()
            lines.append(
                f"Sum of the {kind} rows' Δ acc: {part_sum * 100:+.2f} pt; the whole variant: "
                f"{whole.iloc[0] * 100:+.2f} pt."
            )
        lines.append("")
    return "\n".join(lines)


def write_plots(table: pd.DataFrame, plots_dir: Path) -> None:
    """Data for `dvc plots`: accuracy against throughput, and latency percentiles, one file per dataset."""
    for dataset, group in table.groupby("dataset"):
        write_json(
            Path(plots_dir) / f"pareto_{dataset}.json",
            [
                {
                    "variant": r["variant"],
                    "samples_per_second": round(r["samples_per_second"], 3),
                    "accuracy": round(r["accuracy"], 6),
                }
                for _, r in group.iterrows()
            ],
        )
        latency = [
            {"model": f"{r['variant']} {k.removesuffix('_ms')}", "latency_ms": round(r["latency"][k], 3)}
            for _, r in group.iterrows()
            if isinstance(r.get("latency"), dict) and r["latency"]
            for k in ("p50_ms", "p95_ms", "p99_ms")
        ]
        write_json(Path(plots_dir) / f"latency_{dataset}.json", latency)


def render_image(table: pd.DataFrame, path: Path) -> None:
    """Accuracy against throughput per dataset, the Pareto front drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        group = table[table["dataset"] == dataset]
        ax.scatter(group["samples_per_second"], group["accuracy"])
        for _, r in group.iterrows():
            ax.annotate(
                r["variant"],
                (r["samples_per_second"], r["accuracy"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        front = pareto_front(group)
        ax.plot(front["samples_per_second"], front["accuracy"], linestyle="--", alpha=0.6)
        ax.set(title=dataset, xlabel="samples/s (median)", ylabel="accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def references_markdown(references: dict, rounds: int) -> str:
    """The best model within budget against the fastest engine default recipe, per dataset."""
    lines = [
        "## Against the engines' default recipes",
        "",
        "samples/s ratio of the best model within budget to the fastest of `compare.references`, round by round",
        f"({rounds} rounds): median [min, max].",
        "",
    ]
    for dataset, c in references.items():
        r = c["ratio"]
        lines.append(
            f"- {dataset}: `{c['best']}` against `{c['reference']}`: {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]"
        )
    return "\n".join([*lines, ""])
