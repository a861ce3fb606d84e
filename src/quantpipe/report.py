"""The comparison: every model side by side against the baseline, as tables, plots data, an image and JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json, write_json
from quantpipe.side_by_side import paired_ratio
from quantpipe.statistics import timing_summary


def collect_metrics(eval_dir: Path, names: list[str], datasets: list[str]) -> pd.DataFrame:
    """Read `eval_dir/<name>/<dataset>.json` for exactly the configured models and datasets."""
    rows = []
    for name in names:
        for dataset in datasets:
            path = Path(eval_dir) / name / f"{dataset}.json"
            if not path.is_file():
                raise QuantpipeError(f"{path}: metrics not found (run the evaluate stage for '{name}')")
            rows.append(read_json(path))
    return pd.DataFrame(rows)


def comparison_table(metrics: pd.DataFrame, baseline: str, accuracy_budget: float, side_by_side: dict) -> pd.DataFrame:
    """Add accuracy delta and speed ratio against `baseline` on the same dataset; mark the fastest model
    within `accuracy_budget` of it. Throughput and speed ratio come from `side_by_side` (the side_by_side
    stage's output): samples/s per round, and the median and range of the round-by-round ratios."""
    missing = set(metrics["dataset"]) - set(metrics.loc[metrics["variant"] == baseline, "dataset"])
    if missing:
        raise QuantpipeError(f"compare.baseline: no '{baseline}' metrics for dataset(s) {sorted(missing)}")
    table = metrics.copy()
    base = table[table["variant"] == baseline].set_index("dataset")
    table["accuracy_delta"] = table["accuracy"] - table["dataset"].map(base["accuracy"])
    cap = side_by_side.get("max_samples")
    for dataset, n in table.groupby("dataset")["n"].max().items():
        timed = side_by_side["datasets"].get(dataset, {}).get("examples")
        if timed != min(n, cap or n):
            raise QuantpipeError(
                f"side_by_side: {dataset} timed on {timed} examples, expected {min(n, cap or n)} "
                f"of the {n} evaluated (re-run the side_by_side stage)"
            )
    rounds = [_rounds(side_by_side, d, v) for d, v in zip(table["dataset"], table["variant"])]
    table["throughput"] = [timing_summary(r) for r in rounds]
    table["samples_per_second"] = [t["median"] for t in table["throughput"]]
    spreads = [paired_ratio(r, _rounds(side_by_side, d, baseline)) for r, d in zip(rounds, table["dataset"])]
    table["speed_ratio"] = [s["median"] for s in spreads]
    table["speed_ratio_low"] = [s["min"] for s in spreads]
    table["speed_ratio_high"] = [s["max"] for s in spreads]
    within = table["accuracy_delta"] >= -accuracy_budget - 1e-12
    table["best_within_budget"] = False
    for _, group in table[within].groupby("dataset"):
        table.loc[group["samples_per_second"].idxmax(), "best_within_budget"] = True
    return table.sort_values(["dataset", "samples_per_second"], ascending=[True, False]).reset_index(drop=True)


def _rounds(side_by_side: dict, dataset: str, model: str) -> list[float]:
    try:
        return side_by_side["datasets"][dataset]["models"][model]["samples_per_second"]
    except KeyError:
        raise QuantpipeError(
            f"side_by_side: no rounds for '{model}' on '{dataset}' (re-run the side_by_side stage)"
        ) from None


def static_against_dynamic(side_by_side: dict, kinds: dict[str, str], datasets: list[str]) -> dict[str, dict]:
    """Per dataset: the fastest dynamic variant side by side (highest median samples/s), and each static
    variant's speed against it, round by round (datasets with no dynamic or no static variant: left out)."""
    out = {}
    for dataset in datasets:
        speeds = side_by_side["datasets"][dataset]["models"]
        dynamic = [name for name, kind in kinds.items() if kind == "dynamic" and name in speeds]
        if not dynamic or "static" not in kinds.values():
            continue
        best = max(dynamic, key=lambda name: np.median(speeds[name]["samples_per_second"]))
        out[dataset] = {
            "best_dynamic": best,
            "static": {
                name: paired_ratio(speeds[name]["samples_per_second"], speeds[best]["samples_per_second"])
                for name, kind in kinds.items()
                if kind == "static" and name in speeds
            },
        }
    return out


def static_against_dynamic_markdown(comparison: dict, rounds: int) -> str:
    lines = [
        "## Static against the fastest dynamic int8 variant, side by side",
        "",
        f"samples/s ratio, round by round ({rounds} rounds): median [min, max].",
        "",
    ]
    for dataset, c in comparison.items():
        lines.append(
            f"- {dataset}: against `{c['best_dynamic']}`: "
            + "; ".join(
                f"`{name}` {r['median']:.3f}x [{r['min']:.3f}, {r['max']:.3f}]" for name, r in c["static"].items()
            )
        )
    return "\n".join([*lines, ""])


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
                "size MB": f"{r['model_size_mb']:.1f}",
                "peak RSS MB": f"{r['peak_rss_mb']:.0f}" if pd.notna(r.get("peak_rss_mb")) else "-",
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
        "Accuracy and F1 on the whole split, 95% paired bootstrap intervals. Latency, size, peak RSS: each model's",
        "own evaluate stage (a fresh process per model). Latency: batch size 1, tokenization included.",
        "",
    ]
    if environment:
        cpu, versions = environment["cpu"], environment["versions"]
        flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of the tracked flags"
        lines += [
            f"Machine: {cpu['model']} ({cpu['cores']} cores; {flags}). "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
            "",
        ]
    for dataset, group in table.groupby("dataset", sort=True):
        timed = side_by_side["datasets"][dataset]["examples"]
        lines += [
            f"## {dataset}",
            "",
            (f"{group['n'].max()} examples scored; the first {timed} timed in {side_by_side['rounds']} rounds."),
            "",
            display_table(group).to_markdown(index=False),
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
        table.to_markdown(index=False),
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


def summary_metrics(table: pd.DataFrame, static_vs_dynamic: dict | None = None) -> dict:
    """Nested {dataset: {variant: {...}}} for `dvc metrics`; a static variant also gets its speed against
    the fastest dynamic one (`static_against_dynamic`), when given."""
    out: dict = {}
    for dataset, c in (static_vs_dynamic or {}).items():
        for name, ratio in c["static"].items():
            out.setdefault(dataset, {})[name] = {
                "speed_vs_best_dynamic": round(ratio["median"], 4),
                "speed_vs_best_dynamic_min": round(ratio["min"], 4),
                "speed_vs_best_dynamic_max": round(ratio["max"], 4),
            }
    for _, row in table.iterrows():
        out.setdefault(row["dataset"], {}).setdefault(row["variant"], {}).update(
            {
                "accuracy": round(row["accuracy"], 6),
                "accuracy_delta": round(row["accuracy_delta"], 6),
                "samples_per_second": round(row["samples_per_second"], 3),
                "speed_ratio": round(row["speed_ratio"], 4),
                "speed_ratio_low": round(row["speed_ratio_low"], 4),
                "speed_ratio_high": round(row["speed_ratio_high"], 4),
                "model_size_mb": round(row["model_size_mb"], 3),
                "best_within_budget": bool(row["best_within_budget"]),
            }
        )
    return out


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


def pareto_front(group: pd.DataFrame) -> pd.DataFrame:
    """Models no other model beats on both accuracy and throughput, sorted by throughput."""
    keep = [
        not (
            (group["accuracy"] >= r["accuracy"])
            & (group["samples_per_second"] >= r["samples_per_second"])
            & ((group["accuracy"] > r["accuracy"]) | (group["samples_per_second"] > r["samples_per_second"]))
        ).any()
        for _, r in group.iterrows()
    ]
    return group[keep].sort_values("samples_per_second")


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
