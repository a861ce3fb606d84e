"""The comparison's analysis: every model against the baseline (accuracy, speed, size, memory), the best
within the accuracy budget, and how it fares against the engines' default recipes. What it computes is what
`metrics/compare.json` holds; `quantpipe.rendering` turns it into the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json
from quantpipe.statistics import paired_ratio, timing_summary


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
    """Add accuracy delta, speed, size and peak-RSS ratios against `baseline` on the same dataset; mark the fastest model
    within `accuracy_budget` of it. Throughput and speed ratio come from `side_by_side` (the side_by_side
    stage's output): samples/s per round, and the median and range of the round-by-round ratios."""
    missing = set(metrics["dataset"]) - set(metrics.loc[metrics["variant"] == baseline, "dataset"])
    if missing:
        raise QuantpipeError(f"compare.baseline: no '{baseline}' metrics for dataset(s) {sorted(missing)}")
    table = metrics.copy()
    base = table[table["variant"] == baseline].set_index("dataset")
    table["accuracy_delta"] = table["accuracy"] - table["dataset"].map(base["accuracy"])
    table["size_ratio"] = table["model_size_mb"] / table["dataset"].map(base["model_size_mb"])
    for memory in ("peak_rss", "peak_rss_serving"):
        table[f"{memory}_ratio"] = table[f"{memory}_mb"] / table["dataset"].map(base[f"{memory}_mb"])
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


# the columns of metrics/compare.json per model, with the decimals they keep
SUMMARY_DIGITS = {
    "accuracy": 6,
    "accuracy_delta": 6,
    "samples_per_second": 3,
    "speed_ratio": 4,
    "speed_ratio_low": 4,
    "speed_ratio_high": 4,
    "model_size_mb": 3,
    "size_ratio": 4,
    "peak_rss_serving_mb": 1,
    "peak_rss_serving_ratio": 4,
    "peak_rss_mb": 1,
    "peak_rss_ratio": 4,
}


def summary_metrics(table: pd.DataFrame, references: dict | None = None) -> dict:
    """Nested {dataset: {variant: {...}}} for `dvc metrics`; per dataset, `against_references` holds the
    best model within budget against the fastest engine default recipe (`against_references`), when given."""
    out: dict = {}
    for _, row in table.iterrows():
        figures = {column: round(row[column], digits) for column, digits in SUMMARY_DIGITS.items()}
        figures["best_within_budget"] = bool(row["best_within_budget"])
        out.setdefault(row["dataset"], {}).setdefault(row["variant"], {}).update(figures)
    for dataset, c in (references or {}).items():
        out.setdefault(dataset, {})["against_references"] = {
            "best": c["best"],
            "fastest_reference": c["reference"],
            "speed_ratio": round(c["ratio"]["median"], 4),
            "speed_ratio_low": round(c["ratio"]["min"], 4),
            "speed_ratio_high": round(c["ratio"]["max"], 4),
        }
    return out


def against_references(table: pd.DataFrame, side_by_side: dict, references: list[str]) -> dict[str, dict]:
    """Per dataset: the best model within budget against the fastest of `references` (the engines' own
    default recipes), round by round. Datasets where the best model is itself a reference: left out."""
    out = {}
    for dataset, group in table.groupby("dataset"):
        best = group.loc[group["best_within_budget"], "variant"]
        refs = group[group["variant"].isin(references)]
        if best.empty or refs.empty or best.iloc[0] in references:
            continue
        fastest = refs.loc[refs["samples_per_second"].idxmax(), "variant"]
        ratio = paired_ratio(_rounds(side_by_side, dataset, best.iloc[0]), _rounds(side_by_side, dataset, fastest))
        out[dataset] = {"best": best.iloc[0], "reference": fastest, "ratio": ratio}
    return out


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
