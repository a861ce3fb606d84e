"""The comparison: every variant side by side against the baseline, as a table, a markdown report and JSON."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json

COLUMNS = ["dataset", "variant", "accuracy", "accuracy_delta", "f1", "samples_per_second", "speed_ratio",
           "model_size_mb", "n"]


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


def comparison_table(metrics: pd.DataFrame, baseline: str, accuracy_budget: float) -> pd.DataFrame:
    """Add accuracy delta and speed ratio against `baseline` on the same dataset; mark the fastest
    variant whose accuracy is within `accuracy_budget` of the baseline."""
    missing = set(metrics["dataset"]) - set(metrics.loc[metrics["variant"] == baseline, "dataset"])
    if missing:
        raise QuantpipeError(f"compare.baseline: no '{baseline}' metrics for dataset(s) {sorted(missing)}")
    base = metrics[metrics["variant"] == baseline].set_index("dataset")
    table = metrics.copy()
    table["accuracy_delta"] = table["accuracy"] - table["dataset"].map(base["accuracy"])
    table["speed_ratio"] = table["samples_per_second"] / table["dataset"].map(base["samples_per_second"])
    within = table["accuracy_delta"] >= -accuracy_budget - 1e-12
    table["best_within_budget"] = False
    for _, group in table[within].groupby("dataset"):
        table.loc[group["samples_per_second"].idxmax(), "best_within_budget"] = True
    return table.sort_values(["dataset", "samples_per_second"], ascending=[True, False])[
        [*COLUMNS, "best_within_budget"]
    ].reset_index(drop=True)


def markdown_report(table: pd.DataFrame, baseline: str, accuracy_budget: float) -> str:
    lines = [
        "# quantpipe comparison",
        "",
        f"Baseline: `{baseline}`. Accuracy delta and speed ratio are against the baseline on the same dataset;",
        f"**bold** marks the fastest variant within {accuracy_budget * 100:g} accuracy point(s) of it.",
        "Speed: samples per second over the whole split, tokenization included, length-sorted batches.",
        "",
    ]
    for dataset, group in table.groupby("dataset", sort=True):
        shown = group.drop(columns=["dataset"]).copy()
        shown["variant"] = [f"**{v}**" if best else v for v, best in zip(shown["variant"], shown["best_within_budget"])]
        shown = shown.drop(columns=["best_within_budget"])
        shown["accuracy_delta"] = shown["accuracy_delta"].map(lambda d: f"{d * 100:+.2f} pt")
        shown["speed_ratio"] = shown["speed_ratio"].map(lambda r: f"{r:.2f}x")
        lines += [f"## {dataset}", "", shown.to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)


def summary_metrics(table: pd.DataFrame) -> dict:
    """Nested {dataset: {variant: {...}}} for `dvc metrics` (accuracy delta and speed ratio per variant)."""
    out: dict = {}
    for row in table.itertuples(index=False):
        out.setdefault(row.dataset, {})[row.variant] = {
            "accuracy": round(row.accuracy, 6),
            "accuracy_delta": round(row.accuracy_delta, 6),
            "samples_per_second": round(row.samples_per_second, 3),
            "speed_ratio": round(row.speed_ratio, 4),
            "model_size_mb": round(row.model_size_mb, 3),
        }
    return out
