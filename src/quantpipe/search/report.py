"""The search's outputs: metrics/search.json (for `dvc metrics`), the trials table, the Pareto front's plot
data and the markdown report."""

from __future__ import annotations

from dataclasses import dataclass

from quantpipe.config.search import SearchParams
from quantpipe.search.runner import TIE_RULE, speed_range


@dataclass
class SearchResult:
    """What a search found: its params, every trial row, the Pareto front's trial ids, the winner, the fallback
    (start, ranking, steps), the winner re-scored on the report splits and the trials tied with it on speed
    (the winner first)."""

    search: SearchParams
    rows: list[dict]
    front: list[str]
    best: dict | None
    fallback: dict | None
    report: dict | None
    tied: list[dict]


def _fields(result: SearchResult) -> tuple:
    return result.search, result.rows, result.front, result.best, result.fallback, result.report


def _speed(row: dict, dataset: str) -> str:
    ratio = row["datasets"][dataset].get("speed_ratio")
    return f"{ratio['median']:.2f}x [{ratio['min']:.2f}, {ratio['max']:.2f}]" if ratio else "-"


def counts(rows: list[dict]) -> dict[str, int]:
    return {
        "tried": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "skipped": sum(r["status"] == "skipped" for r in rows),
        "run_now": sum(r["status"] != "skipped" and not r.get("cached") for r in rows),
    }


def summary_metrics(result: SearchResult) -> dict:
    """What `dvc metrics show/diff` compares: the trial counts and the winner on both splits."""
    search, rows, front, best, fallback, report = _fields(result)
    out = {
        "strategy": search.strategy,
        "accuracy_budget": search.accuracy_budget,
        "trials": counts(rows),
        "pareto": len(front),
    }
    if fallback:
        out["fallback"] = {"start": fallback["start"], "steps": len(fallback["steps"]) - 1, "met": fallback["met"]}
    if best:
        out["winner"] = {
            "trial": best["trial"],
            "speed_ratio": round(best["speed_ratio"], 4),
            "size_mb": round(best["size_mb"], 3),
            "selection": {
                ds: {"accuracy": round(d["accuracy"], 6), "accuracy_delta": round(d["accuracy_delta"], 4)}
                for ds, d in best["datasets"].items()
            },
            "report": {ds: {k: round(v, 6) for k, v in d.items()} for ds, d in (report or {}).items()},
            "speed_range": [round(v, 4) for v in speed_range(best)],
            "tied": [r["trial"] for r in result.tied],
        }
    return out


def pareto_points(rows: list[dict], front: list[str]) -> list[dict]:
    """One point per measured trial for `dvc plots`: speed ratio against the worst accuracy delta."""
    return [
        {
            "trial": r["trial"],
            "speed_ratio": round(r["speed_ratio"], 4),
            "worst_delta": round(r["worst_delta"], 3),
            "pareto": r["trial"] in front,
        }
        for r in rows
        if r.get("status") == "ok" and "speed_ratio" in r
    ]


def search_markdown(result: SearchResult, environment: dict | None) -> str:
    search, rows, front, best, fallback, report = _fields(result)
    datasets = list(search.selection.datasets)
    c = counts(rows)
    lines = ["# quantpipe search", ""]
    if environment:
        cpu = environment["cpu"]
        flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of the tracked flags"
        lines += [f"CPU: **{cpu['model']}**, {cpu['machine']}, {cpu['cores']} cores; flags: {flags}.", ""]
    lines += [
        (
            f"Strategy `{search.strategy}`: {c['tried']} trials tried ({c['ok']} measured, {c['failed']} failed, "
            f"{c['skipped']} skipped as invalid; {c['run_now']} run in this stage, the rest from the trial cache)."
        ),
        (
            f"Scored on the selection split ({', '.join(datasets)}: held-out rows the fine-tune, the calibrations and the "
            "report never use); Δ: accuracy points against fp32 ONNX on the same texts. Speed: each trial timed against "
            f"fp32 ONNX in {search.timing.rounds} paired alternating rounds per dataset, median ratio [min, max]; the "
            "trial's speed is the geometric mean of the datasets' medians."
        ),
        f"Budget: {search.accuracy_budget:g} point(s) below fp32 ONNX on every selection dataset.",
        "",
    ]
    if best:
        lines += [f"## Winner: `{best['trial']}` ({best['label']}), {best['speed_ratio']:.2f}x fp32 ONNX", ""]
        lines += ["| dataset | selection accuracy (Δ) | report accuracy [95% CI] (Δ) |", "|---|---|---|"]
        for ds in datasets + [d for d in (report or {}) if d not in datasets]:
            sel = best["datasets"].get(ds)
            rep = (report or {}).get(ds)
            sel_text = f"{sel['accuracy']:.4f} ({sel['accuracy_delta']:+.2f} pt)" if sel else "-"
            rep_text = (
                f"{rep['accuracy']:.4f} [{rep.get('accuracy_ci_low', rep['accuracy']):.3f}, "
                f"{rep.get('accuracy_ci_high', rep['accuracy']):.3f}] ({rep['accuracy_delta']:+.2f} pt)"
                if rep
                else "-"
            )
            lines.append(f"| {ds} | {sel_text} | {rep_text} |")
        lines += ["", *_ties(result.tied), ""]
        lines += ["Promote it to a declared variant: `python -m quantpipe.search.promote` (see README).", ""]
    else:
        lines += ["## No trial met the budget", ""]
    header = ["trial", "configuration", "worst Δ pt", *(f"{ds} Δ pt / speed" for ds in datasets), "speed", "MB"]
    measured = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r.get("speed_ratio", 0))
    lines += [
        "## Pareto front (worst Δ against speed)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += [_row(r, datasets) for r in measured if r["trial"] in front]
    lines += ["", "## Every measured trial", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [_row(r, datasets) for r in measured]
    others = [r for r in rows if r["status"] != "ok"]
    if others:
        lines += ["", "## Failed and skipped", "", "| trial | configuration | status | reason |", "|---|---|---|---|"]
        lines += [f"| {r['trial']} | {r['label']} | {r['status']} | {r['reason']} |" for r in others]
    if fallback:
        lines += ["", f"## Fallback from {fallback['start']}", ""]
        if fallback["ranking"]:
            lines.append(
                "Parts ranked by the accuracy recovered when each alone stays fp32 (worst Δ): "
                + ", ".join(f"{p['part']} {p['worst_delta']:+.2f}" for p in fallback["ranking"])
                + "."
            )
            lines.append("")
        lines += ["| step | left in fp32 | worst Δ pt | speed |", "|---|---|---|---|"]
        for i, step in enumerate(fallback["steps"]):
            if step["status"] != "ok":
                lines.append(
                    f"| {i} | {' '.join(step['exclude_parts']) or '-'} | {step['status']}: {step.get('reason')} | - |"
                )
                continue
            lines.append(
                f"| {i} | {' '.join(step['exclude_parts']) or '-'} | {step['worst_delta']:+.2f} | {step['speed_ratio']:.2f}x |"
            )
        lines += ["", f"Budget {'met' if fallback['met'] else 'not met'}.", ""]
    return "\n".join(lines) + "\n"


def _ties(tied: list[dict]) -> list[str]:
    """The winner's tie set and the rule that chose among it."""
    fastest = max(tied, key=lambda r: r["speed_ratio"])
    low, high = speed_range(fastest)
    where = f"the fastest median, `{fastest['trial']}`, {fastest['speed_ratio']:.2f}x [{low:.2f}, {high:.2f}]"
    if len(tied) == 1:
        return [f"No other trial within budget has a speed range overlapping {where}: it wins on speed alone."]
    listed = ", ".join(
        f"`{r['trial']}` {r['speed_ratio']:.2f}x [{speed_range(r)[0]:.2f}, {speed_range(r)[1]:.2f}], "
        f"worst Δ {r['worst_delta']:+.2f} pt, {r['size_mb']:.1f} MB"
        for r in tied
    )
    return [
        f"Tied on speed ({len(tied)} trials within budget whose speed ranges overlap {where}): {listed}.",
        "",
        f"Rule: {TIE_RULE}.",
    ]


def _row(r: dict, datasets: list[str]) -> str:
    cells = [r["trial"], r["label"], f"{r['worst_delta']:+.2f}"]
    cells += [f"{r['datasets'][ds]['accuracy_delta']:+.2f} / {_speed(r, ds)}" for ds in datasets]
    cells += [f"{r['speed_ratio']:.2f}x", f"{r['size_mb']:.1f}"]
    return "| " + " | ".join(cells) + " |"
