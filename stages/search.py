"""Stage search (search/dvc.yaml): trials over `search.space`, the fallback and the winner -> metrics/search.json,
metrics/search/trials/ (the trial cache), reports/search/."""

import logging

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.errors import QuantpipeError
from quantpipe.inference import check_max_length
from quantpipe.io import atomic_dir, read_json, write_json, write_text
from quantpipe.search.executors import check_ray_address
from quantpipe.search.report import SearchResult, pareto_points, search_markdown, summary_metrics
from quantpipe.search.runner import (
    STRATEGIES,
    TIE_RULE,
    check_some_trial_measured,
    check_space_parts,
    fallback,
    pareto,
    winner,
)
from quantpipe.search.selection import selection_data
from quantpipe.search.trial import TrialCache, TrialContext, on_report_splits


def main() -> None:
    args = stage_args(
        __doc__,
        "base",
        "onnx",
        "calibration",
        "prepared",
        "environment",
        "trials",
        "search_report",
        out="metrics/search.json",
    )
    logging.getLogger().setLevel(logging.WARNING)  # ONNX Runtime's quantizer logs every tensor at INFO
    params = load_params(args.params)
    search = params.search
    if search is None:
        raise QuantpipeError("search: params.yaml has no search section (docs/search.md)")
    if search.executor == "ray" and search.ray_address:
        check_ray_address(search.ray_address, f"{args.params}: search.ray_address")
    check_max_length(args.base, params.evaluate.max_length, "evaluate.max_length")
    ctx = TrialContext(
        params, args.base, args.onnx, args.calibration, args.prepared, selection_data(params, args.prepared)
    )
    check_space_parts(ctx)
    cache = TrialCache(args.trials, ctx.fingerprint())
    rows = STRATEGIES[search.strategy](ctx, cache)
    check_some_trial_measured(rows)
    steps = fallback(ctx, cache, rows)
    measured = rows + [s for s in (steps["steps"] if steps else []) if s["trial"] not in {r["trial"] for r in rows}]
    front = pareto(measured)
    best, tied = winner(measured, search)
    report = on_report_splits(ctx, best["variant"], ()) if best else None
    environment = read_json(args.environment) if args.environment.is_file() else None
    result = SearchResult(search, measured, front, best, steps, report, tied)
    with atomic_dir(args.search_report) as tmp:
        write_text(tmp / "search.md", search_markdown(result, environment))
        write_json(tmp / "trials.json", {"trials": measured, "fallback": steps})
        write_json(tmp / "pareto.json", pareto_points(measured, front))
        ties = {"tied": [r["trial"] for r in tied], "tie_rule": TIE_RULE}
        write_json(tmp / "winner.json", {"winner": best, **ties, "report": report})
    write_json(args.out, summary_metrics(result))
    for row in measured:
        if row["status"] == "ok":
            print(
                f"{row['trial']} {row['label']}: worst Δ {row['worst_delta']:+.2f} pt, {row.get('speed_ratio', 0):.2f}x"
            )
        else:
            print(f"{row['trial']} {row['label']}: {row['status']}: {row['reason']}")
    if best:
        print(
            f"winner: {best['trial']} {best['label']} {best['speed_ratio']:.2f}x, {len(tied) - 1} other trial(s) tied on speed"
        )
    else:
        print("winner: none within budget")


if __name__ == "__main__":
    run_stage(main)
