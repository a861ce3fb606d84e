"""The search's strategies (grid, random, Optuna's TPE), the accuracy-aware fallback and the winner. Every
trial goes through `measure`: skipped when invalid, read from the cache when known, else run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from statistics import geometric_mean

from quantpipe.config.search import SearchParams
from quantpipe.errors import QuantpipeError
from quantpipe.search.executors import run_trials
from quantpipe.search.space import Candidate, candidate, grid_points, make_candidate, planned_points
from quantpipe.search.trial import TrialCache, TrialContext, graph_parts, run_trial


def measure(ctx: TrialContext, cache: TrialCache, candidates: list[Candidate], timed: bool = True) -> list[dict]:
    """One row per candidate, in order: skipped (with its reason), cached, or measured now (and cached)."""
    search = ctx.params.search
    rows, todo = [], []
    for cand in candidates:
        row = {"trial": cand.trial_id, "label": cand.label, "exclude_parts": list(cand.exclude_parts)}
        key = cand.trial_id + ("" if timed else "-accuracy")
        if cand.variant is None:
            row.update(status="skipped", reason=cand.reason)
        elif (cached := cache.get(key)) is not None:
            row.update(cached, cached=True)
        else:
            todo.append((cand, key, row))
        rows.append(row)
    if todo:
        cached = sum(bool(row.get("cached")) for row in rows)
        print(f"{len(todo)} new trial(s) to run ({cached} from the cache, {len(rows) - len(todo) - cached} skipped):")
        for cand, key, _ in todo:
            print(f"  {key} {cand.label}")

    def done(i: int, result: dict) -> None:
        _, key, row = todo[i]
        cache.put(key, result)
        row.update(result, cached=False)

    jobs = [(ctx, cand.raw, cand.exclude_parts, timed) for cand, _, _ in todo]
    run_trials(run_trial, jobs, search, ctx.params.evaluate.threads, done)
    return rows


def check_space_parts(ctx: TrialContext) -> None:
    """Each `exclude_parts` value of the space names parts of the graph its trials quantize, checked before the
    first trial (`layer.99` of a 2-layer model failed every trial it was in)."""
    search = ctx.params.search
    for point in grid_points(search):
        cand = candidate(search, point)
        if cand.variant is None or not cand.exclude_parts:
            continue
        try:
            parts = graph_parts(cand.variant, ctx)
        except QuantpipeError:  # a graph that cannot be read or named beforehand: its trials fail saying so
            continue
        missing = sorted(set(cand.exclude_parts) - set(parts))
        if missing:
            raise QuantpipeError(
                f"search.space.exclude_parts: {missing} not in the graph the trial {cand.label} quantizes "
                f"(its parts: {', '.join(parts)})"
            )


def check_some_trial_measured(rows: list[dict]) -> None:
    """A search none of whose trials could be measured (a broken export, a value no trial can use) stops with one
    line naming the most frequent cause, instead of ending green with no winner."""
    if any(row["status"] == "ok" for row in rows):
        return
    (status, cause), count = Counter((row["status"], row["reason"]) for row in rows).most_common(1)[0]
    others = f", {len(rows) - count} for other causes" if count < len(rows) else ""
    raise QuantpipeError(
        f"search: none of the {len(rows)} trial(s) could be measured ({count} {status}{others}): {cause}"
    )


def within_budget(row: dict, search: SearchParams) -> bool:
    return row.get("status") == "ok" and row["worst_delta"] >= -search.accuracy_budget


def planned(ctx: TrialContext, cache: TrialCache) -> list[dict]:
    """`grid` and `random`: the planned points, all measured (in parallel when there are workers)."""
    search = ctx.params.search
    return measure(ctx, cache, [candidate(search, point) for point in planned_points(search)])


def tpe(ctx: TrialContext, cache: TrialCache) -> list[dict]:
    """Optuna's TPE sampler, two objectives (the worst selection accuracy delta, the speed ratio), asking
    `workers` points at a time; a point asked again is read from the cache."""
    import optuna

    search = ctx.params.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "maximize"], sampler=optuna.samplers.TPESampler(seed=search.seed)
    )
    grids = search.grids()
    rows: dict[str, dict] = {}
    asked = 0
    while asked < search.max_trials:
        batch = [study.ask() for _ in range(min(search.workers, search.max_trials - asked))]
        asked += len(batch)
        points = []
        for trial in batch:  # define-by-run: which grid, then one value index per axis of that grid
            g = trial.suggest_categorical("grid", list(range(len(grids)))) if len(grids) > 1 else 0
            points.append(
                {a: v[trial.suggest_categorical(f"{g}.{a}", list(range(len(v))))] for a, v in grids[g].items()}
            )
        for trial, row in zip(batch, measure(ctx, cache, [candidate(search, p) for p in points]), strict=True):
            rows.setdefault(row["trial"], row)
            if row["status"] == "ok":
                study.tell(trial, [row["worst_delta"], row["speed_ratio"]])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return list(rows.values())


# strategy name -> function(ctx, cache) -> one row per distinct trial
STRATEGIES: dict[str, Callable[[TrialContext, TrialCache], list[dict]]] = {
    "grid": planned,
    "random": planned,
    "tpe": tpe,
}


def fallback(ctx: TrialContext, cache: TrialCache, rows: list[dict]) -> dict | None:
    """Intel Neural Compressor's basic strategy: from the start (the fastest trial, or a declared variant),
    rank the parts of the network by the accuracy recovered when each alone stays fp32, then leave them in
    fp32 one at a time, most damaging first, until the start meets the budget on every selection dataset."""
    search = ctx.params.search
    start = search.fallback.start
    if start is None:
        return None
    if start == "fastest":
        ok = [r for r in rows if r.get("status") == "ok"]
        if not ok:
            return None
        fastest = max(ok, key=lambda r: r["speed_ratio"])
        raw, parts, name = fastest["variant"], tuple(fastest["exclude_parts"]), f"fastest trial {fastest['trial']}"
    else:
        raw, parts, name = dict(start), (), "the declared start"
    first = measure(ctx, cache, [make_candidate(raw, parts, {"start": name})])[0]
    out = {"start": name, "ranking": [], "steps": [first], "met": within_budget(first, search)}
    if out["met"] or first["status"] != "ok":
        return out
    variant = make_candidate(raw, (), {}).variant
    remaining = [p for p in graph_parts(variant, ctx) if p not in parts]
    leave_one_out = measure(ctx, cache, [make_candidate(raw, (*parts, p), {"fp32": p}) for p in remaining], timed=False)
    ranked = sorted(
        ((p, r) for p, r in zip(remaining, leave_one_out, strict=True) if r["status"] == "ok"),
        key=lambda pr: -pr[1]["worst_delta"],
    )
    out["ranking"] = [{"part": p, "worst_delta": r["worst_delta"]} for p, r in ranked]
    excluded = list(parts)
    for part, _ in ranked[: search.fallback.max_steps]:
        excluded.append(part)
        step = measure(ctx, cache, [make_candidate(raw, tuple(excluded), {"fp32": " ".join(excluded)})])[0]
        out["steps"].append(step)
        if within_budget(step, search):
            out["met"] = True
            break
    return out


# how the winner is chosen among trials whose speeds timing noise cannot tell apart (said in the report)
TIE_RULE = (
    "trials whose speed range overlaps the fastest's are tied on speed; among them the winner is the one with the "
    "higher worst selection accuracy Δ, then the smaller file (MB), then the lower trial id"
)


def speed_range(row: dict) -> tuple[float, float]:
    """A timed trial's speed as a range: the geometric means of its datasets' slowest and fastest round ratios
    (its speed is the geometric mean of their medians)."""
    ratios = [d["speed_ratio"] for d in row["datasets"].values()]
    return geometric_mean(r["min"] for r in ratios), geometric_mean(r["max"] for r in ratios)


def winner(rows: list[dict], search: SearchParams) -> tuple[dict | None, list[dict]]:
    """The winner and the trials tied with it on speed, winner first, among the measured trials within the
    budget on every selection dataset (trials and fallback steps); see TIE_RULE. A faster median alone does
    not win: inside the timing noise the choice would change from one run to the next."""
    eligible = [r for r in rows if within_budget(r, search) and "speed_ratio" in r]
    if not eligible:
        return None, []
    low, high = speed_range(max(eligible, key=lambda r: r["speed_ratio"]))
    tied = [r for r in eligible if (span := speed_range(r))[0] <= high and span[1] >= low]
    tied.sort(key=lambda r: (-r["worst_delta"], r["size_mb"], r["trial"]))
    return tied[0], tied


def pareto(rows: list[dict]) -> list[str]:
    """Trials no other trial beats on both the worst accuracy delta and the speed ratio."""
    ok = [r for r in rows if r.get("status") == "ok" and "speed_ratio" in r]
    return [
        r["trial"]
        for r in ok
        if not any(
            o["worst_delta"] >= r["worst_delta"]
            and o["speed_ratio"] >= r["speed_ratio"]
            and (o["worst_delta"], o["speed_ratio"]) != (r["worst_delta"], r["speed_ratio"])
            for o in ok
        )
    ]
