"""The comparison's analysis: every model against the baseline (accuracy, speed, size, memory), the best
within the accuracy budget, and how it fares against the engines' default recipes. What it computes is what
`metrics/compare.json` and `metrics/answer.json` hold; `quantpipe.rendering` turns it into the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.errors import QuantpipeError
from quantpipe.io import artifact_error, read_json
from quantpipe.statistics import agreement, paired_ratio, timing_summary


def collect_metrics(eval_dir: Path, names: list[str], datasets: list[str]) -> pd.DataFrame:
    """Read `eval_dir/<name>/<dataset>.json` for exactly the configured models and datasets (a model skipped on
    this CPU: a row with its `skipped` reason and no figures)."""
    rows = []
    for name in names:
        for dataset in datasets:
            path = Path(eval_dir) / name / f"{dataset}.json"
            if not path.is_file():
                raise QuantpipeError(f"{path}: metrics not found (run the evaluate stage for '{name}')")
            row = read_json(path, expect=dict)
            if not row.get("skipped"):
                check_scored(path, row)
            rows.append(row)
    return pd.DataFrame(rows)


def check_scored(path: Path, row: dict) -> None:
    """A scored model's metrics name their model and dataset and hold its accuracy, a number in [0, 1] (raise the
    one-line `artifact_error` naming the file)."""
    missing = [key for key in ("variant", "dataset", "accuracy") if key not in row]
    if missing:
        raise artifact_error(path, f"no {', '.join(map(repr, missing))} (not an evaluate stage's metrics)")
    accuracy = row["accuracy"]
    if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1:
        raise artifact_error(path, f"accuracy: {accuracy!r} is not a number in [0, 1]")


def skipped_models(metrics: pd.DataFrame) -> dict[str, str]:
    """{model: reason} of the models the evaluate stage skipped on this CPU."""
    if "skipped" not in metrics:
        return {}
    rows = metrics[metrics["skipped"].notna()]
    return dict(zip(rows["variant"], rows["skipped"]))


def comparison_table(metrics: pd.DataFrame, baseline: str, accuracy_budget: float, side_by_side: dict) -> pd.DataFrame:
    """Add accuracy delta, speed, size and peak-RSS ratios against `baseline` on the same dataset; mark the fastest model
    within `accuracy_budget` of it. Throughput and speed ratio come from `side_by_side` (the side_by_side
    stage's output): samples/s per round, and the median and range of the round-by-round ratios, and the
    streams (concurrency) each model was timed at. Models skipped on this CPU are left out."""
    if "skipped" in metrics:
        metrics = metrics[metrics["skipped"].isna()].drop(columns="skipped").astype({"n": int})
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
    table["streams"] = [
        side_by_side["datasets"][d]["models"][v].get("streams", 1) for d, v in zip(table["dataset"], table["variant"])
    ]
    table["within_budget"] = table["accuracy_delta"] >= -accuracy_budget - 1e-12
    table["best_within_budget"] = False
    for _, group in table[table["within_budget"]].groupby("dataset"):
        table.loc[group["samples_per_second"].idxmax(), "best_within_budget"] = True
    return table.sort_values(["dataset", "samples_per_second"], ascending=[True, False]).reset_index(drop=True)


def with_agreement(
    table: pd.DataFrame,
    predictions_dir: Path,
    baseline: str,
    n_resamples: int,
    seed: int,
    teachers: dict[tuple[int, str], str] | None = None,
) -> pd.DataFrame:
    """Add `agreement`, the share of each model's predicted labels (`predictions_dir/<model>/<dataset>.json`,
    written by its evaluate stage) equal to the baseline's on the same texts, with its paired bootstrap 95% CI
    (`agreement_ci_low`/`agreement_ci_high`; None with `n_resamples` 0). With `teachers` ((max_length, truncation)
    -> the baseline or its copy at that length policy, `teachers_by_length`), `agreement_at_length` (and its CI):
    the same against the baseline's model reading the texts as the row's model does, where one was measured."""
    rows = list(zip(table["dataset"], table["variant"], table["n"]))
    labels = {(d, v): _labels(predictions_dir, v, d, n) for d, v, n in rows}
    figures = [agreement(labels[d, baseline], labels[d, v], n_resamples, seed) for d, v, _ in rows]
    table = table.copy()
    for i, column in enumerate(("agreement", "agreement_ci_low", "agreement_ci_high")):
        table[column] = [f[i] for f in figures]
    if teachers is not None and "max_length" in table:
        policies = zip(table["max_length"], table["truncation"])
        refs = [teachers.get((int(length), truncation)) for length, truncation in policies]
        same = [
            agreement(labels[d, ref], labels[d, v], n_resamples, seed) if ref else (None, None, None)
            for (d, v, _), ref in zip(rows, refs)
        ]
        for i, column in enumerate(
            ("agreement_at_length", "agreement_at_length_ci_low", "agreement_at_length_ci_high")
        ):
            table[column] = [f[i] for f in same]
    return table


def teachers_by_length(variants: dict, baseline: str, baseline_params, default_length) -> dict[tuple[int, str], str]:
    """(max_length, truncation) -> the model whose labels a model reading texts that way is compared with: the
    baseline at its length (`default_length`, the evaluate section's), or a variant that is the baseline's own
    params (`baseline_params`) but for its length policy, threads and streams (e.g. PyTorch fp32 of the base model
    at 128 head+tail)."""
    ignored = {"max_length", "truncation", "threads", "streams"}
    out = {(default_length.max_length, default_length.truncation): baseline}
    for name, variant in variants.items():
        if variant.model_dump(exclude=ignored) == baseline_params.model_dump(exclude=ignored):
            policy = (variant.max_length or default_length.max_length, variant.truncation)
            out.setdefault(policy, name)
    return out


def _labels(predictions_dir: Path, model: str, dataset: str, n: int) -> list[int]:
    path = Path(predictions_dir) / model / f"{dataset}.json"
    if not path.is_file():
        raise QuantpipeError(f"{path}: predictions not found (run the evaluate stage for '{model}')")
    labels = read_json(path, expect=dict).get("labels")
    if not isinstance(labels, list):
        raise artifact_error(path, "no list of labels")
    if len(labels) != n:
        raise QuantpipeError(f"{path}: {len(labels)} labels for the {n} texts scored (re-run the evaluate stage)")
    return labels


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
    "agreement": 6,
    "agreement_ci_low": 6,
    "agreement_ci_high": 6,
    "agreement_at_length": 6,
    "agreement_at_length_ci_low": 6,
    "agreement_at_length_ci_high": 6,
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
        figures = {
            column: round(row[column], digits)
            for column, digits in SUMMARY_DIGITS.items()
            if column in row and pd.notna(row[column])
        }
        figures["best_within_budget"] = bool(row["best_within_budget"])
        if pd.notna(row.get("max_length")):  # what the row's model is and reads
            figures |= {"model": row["model"], "max_length": int(row["max_length"]), "truncation": row["truncation"]}
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
    default recipes), round by round (`ranked`: the ratios' [min, max] excludes 1.0x). Datasets where the best
    model is itself a reference: left out."""
    out = {}
    for dataset, group in table.groupby("dataset"):
        best = group.loc[group["best_within_budget"], "variant"]
        refs = group[group["variant"].isin(references)]
        if best.empty or refs.empty or best.iloc[0] in references:
            continue
        fastest = refs.loc[refs["samples_per_second"].idxmax(), "variant"]
        ratio = paired_ratio(_rounds(side_by_side, dataset, best.iloc[0]), _rounds(side_by_side, dataset, fastest))
        out[dataset] = {"best": best.iloc[0], "reference": fastest, "ratio": ratio, "ranked": ranked(ratio)}
    return out


def ranked(ratio: dict[str, float]) -> bool:
    """Whether the rounds rank two models: their paired ratio's [min, max] does not span 1.0x."""
    return not ratio["min"] <= 1.0 <= ratio["max"]


def the_answer(table: pd.DataFrame, side_by_side: dict, references: list[str]) -> dict[str, dict]:
    """Per dataset, what the report opens with and `metrics/answer.json` holds: the model to ship (`ship`, the
    most samples/s within budget, at its `streams`), its speed against the baseline (`speed_ratio`), against
    the runner-up within budget (`vs_runner_up`, `ranked`) and against the fastest of `references`
    (`vs_reference`, `ranked_vs_reference`; when the model to ship is itself a reference, only its name as
    `fastest_reference`): median and `_low`/`_high` (min, max) of the round-by-round ratios. Then its Δ acc, its
    agreement with the baseline, and the lowest batch-size-1 p50 latency within budget (`latency_best`), the
    choice for one caller at a time, which can differ."""
    against = against_references(table, side_by_side, references)
    out = {}
    for dataset, group in table.groupby("dataset"):
        within = group[group["within_budget"]].sort_values("samples_per_second", ascending=False)
        ship = within.iloc[0]
        to_baseline = {"median": ship["speed_ratio"], "min": ship["speed_ratio_low"], "max": ship["speed_ratio_high"]}
        answer = {"ship": ship["variant"], "streams": int(ship["streams"]), **_ratio_fields("speed_ratio", to_baseline)}
        if pd.notna(ship.get("max_length")):  # what the model to ship is and reads (metrics of this version on)
            answer |= {"model": ship["model"], "max_length": int(ship["max_length"]), "truncation": ship["truncation"]}
        answer["accuracy_delta"] = round(ship["accuracy_delta"], 6)
        for column in AGREEMENT_COLUMNS:
            if pd.notna(ship.get(column)):
                answer[column] = round(ship[column], 6)
        if len(within) > 1:
            runner_up = within.iloc[1]["variant"]
            ratio = paired_ratio(
                _rounds(side_by_side, dataset, ship["variant"]), _rounds(side_by_side, dataset, runner_up)
            )
            answer |= {"runner_up": runner_up, **_ratio_fields("vs_runner_up", ratio), "ranked": ranked(ratio)}
        if dataset in against:
            answer["fastest_reference"] = against[dataset]["reference"]
            answer |= _ratio_fields("vs_reference", against[dataset]["ratio"])
            answer["ranked_vs_reference"] = against[dataset]["ranked"]
        elif ship["variant"] in references:
            answer["fastest_reference"] = ship["variant"]
        p50 = {
            r["variant"]: r["latency"]["p50_ms"]
            for _, r in within.iterrows()
            if isinstance(r.get("latency"), dict) and r["latency"]
        }
        if p50:
            fastest = min(p50, key=p50.get)
            answer |= {"latency_best": fastest, "latency_best_p50_ms": round(p50[fastest], 3)}
            if ship["variant"] in p50:
                answer["ship_p50_ms"] = round(p50[ship["variant"]], 3)
        out[dataset] = answer
    return out


AGREEMENT_COLUMNS = (
    "agreement",
    "agreement_ci_low",
    "agreement_ci_high",
    "agreement_at_length",
    "agreement_at_length_ci_low",
    "agreement_at_length_ci_high",
)


def _ratio_fields(name: str, ratio: dict[str, float]) -> dict[str, float]:
    """A paired ratio as `name` (median), `name_low` and `name_high` (min and max over the rounds)."""
    return {
        name: round(ratio["median"], 4),
        f"{name}_low": round(ratio["min"], 4),
        f"{name}_high": round(ratio["max"], 4),
    }


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
