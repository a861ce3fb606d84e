"""The search: its space and strategies, the trial cache, the fallback, the selection split, bad input, and the
real stage (tiny project) with DVC, a process pool and Ray."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import yaml
from conftest import ran_stages, run

from quantpipe.config import Params, load_params
from quantpipe.errors import QuantpipeError
from quantpipe.search import runner
from quantpipe.search.space import candidate, grid_points, planned_points

REPO = Path(__file__).resolve().parents[1]


def shipped() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def search_with(**changes) -> Params:
    raw = shipped()
    raw["search"].update(changes)
    return Params.model_validate(raw)


def test_the_shipped_space_is_the_reference_sweep_plus_openvino_plus_less_work():
    search = load_params(REPO / "params.yaml").search
    candidates = [candidate(search, point) for point in planned_points(search)]
    reference = [c for c in candidates if "kind" not in c.point]
    valid = [c for c in reference if c.variant is not None]
    assert len(reference) == 64 and len(valid) == 48
    per_preset = {p: sum(c.point["preset"] == p for c in valid) for p in ("arm64", "avx2", "avx512", "avx512_vnni")}
    assert per_preset == {"arm64": 8, "avx2": 16, "avx512": 16, "avx512_vnni": 8}
    skipped = [c for c in candidates if c.variant is None]
    assert all(c.point["reduce_range"] and c.point["preset"] in ("arm64", "avx512_vnni") for c in skipped)
    assert all(c.reason.startswith("reduce_range: the ") for c in skipped)
    openvino = [c for c in candidates if c.point.get("kind") == "openvino" and "model" not in c.point]
    assert len(openvino) == 16 and all(c.variant is not None and c.variant.kind == "openvino" for c in openvino)
    assert {c.variant.streams for c in openvino} == {1, 2}  # the concurrency axis
    less_work = [c for c in candidates if "model" in c.point]  # the model and the tokens it reads as axes
    assert len(less_work) == 8 and all(c.variant is not None for c in less_work)
    assert {(c.variant.model, c.variant.max_length, c.variant.truncation) for c in less_work} == {
        (model, length, truncation)
        for model in ("base", "minilm_ffn768")
        for length in (None, 128)
        for truncation in ("head", "head_tail")
    }
    assert len({c.trial_id for c in candidates}) == 87  # base at 256 head is an OpenVINO grid trial: run once


def test_a_grid_crossing_streams_with_threads_skips_the_combinations_with_more_streams_than_threads():
    search = search_with(
        base={"kind": "openvino", "calibration": "minmax_320"}, space=[{"streams": [1, 2], "threads": [1, 2]}]
    ).search
    candidates = {
        (c.point["streams"], c.point["threads"]): c for c in map(partial(candidate, search), grid_points(search))
    }
    assert {point for point, c in candidates.items() if c.variant is not None} == {(1, 1), (1, 2), (2, 2)}
    assert candidates[2, 1].reason.startswith("streams: 2 streams on 1 thread(s)")


@pytest.mark.parametrize("flags,skipped", [("fpu avx2", True), ("fpu avx2 avx512_bf16", False)])
def test_a_bf16_trial_is_skipped_on_a_cpu_without_bf16(flags, skipped, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"model name\t: Fake CPU\nflags\t\t: {flags}\n")
    monkeypatch.setenv("QUANTPIPE_CPUINFO", str(cpuinfo))
    search = search_with(base={"kind": "pytorch"}, space=[{"autocast": ["none", "bf16"]}]).search
    by_autocast = {c.point["autocast"]: c for c in (candidate(search, p) for p in planned_points(search))}
    assert by_autocast["none"].variant is not None
    if skipped:  # as the pipeline skips such a variant, not run in f32
        assert by_autocast["bf16"].variant is None and "neither AVX512_BF16 nor AMX-BF16" in by_autocast["bf16"].reason
    else:
        assert by_autocast["bf16"].variant.autocast == "bf16"


def test_grid_caps_and_random_samples_without_repeats():
    grid = planned_points(search_with(max_trials=5).search)
    assert grid == planned_points(search_with().search)[:5]
    random = planned_points(search_with(strategy="random", max_trials=10, seed=3).search)
    assert len(random) == 10 and len({json.dumps(p, sort_keys=True) for p in random}) == 10
    assert random == planned_points(search_with(strategy="random", max_trials=10, seed=3).search)
    assert random != planned_points(search_with(strategy="random", max_trials=10, seed=4).search)


def test_exclude_parts_and_kind_axes():
    search = search_with(space={"kind": ["dynamic", "torch_dynamic"], "exclude_parts": [[], ["layer.0"]]}).search
    cands = {
        (c.point["kind"], tuple(c.point["exclude_parts"])): c
        for c in (candidate(search, p) for p in planned_points(search))
    }
    assert cands["dynamic", ("layer.0",)].exclude_parts == ("layer.0",)
    assert cands["torch_dynamic", ()].variant is not None
    assert "no nodes to exclude" in cands["torch_dynamic", ("layer.0",)].reason


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"space": {}}, "search.space: a grid needs at least one axis"),
        ({"space": []}, "search.space: a list of grids needs at least one grid"),
        ({"space": [{"kind": ["openvino"], "preset": ["fast"]}]}, "search.space.preset: Input should be 'performance'"),
        ({"space": {"preset": []}}, "search.space: preset: an axis needs at least one value"),
        ({"space": {"presett": ["avx2"]}}, "search.space: unknown axis 'presett' (did you mean 'preset'?)"),
        ({"space": {"preset": ["avx3"]}}, "search.space.preset: Input should be"),
        ({"space": {"exclude_parts": [["layer0"]]}}, "search.space.exclude_parts: ['layer0'] is not a list of parts"),
        ({"accuracy_budget": 101}, "search.accuracy_budget: Input should be less than or equal to 100"),
        ({"accuracy_budget": -1}, "search.accuracy_budget: Input should be greater than or equal to 0"),
        ({"strategy": "gird"}, "search.strategy: Input should be 'grid', 'random' or 'tpe'"),
        ({"max_trials": 89}, "search: max_trials: 89 asked, the space holds 88 combinations"),
        ({"strategy": "tpe"}, "search: max_trials: the tpe strategy needs it"),
        ({"selection": {"datasets": ["imdb"]}}, "search.selection.datasets: 'imdb' is not one of data.datasets"),
        (
            {"fallback": {"start": {"kind": "static", "calibration": "nope"}}},
            "search.fallback.start.calibration: 'nope'",
        ),
        (
            {"fallback": {"start": {"kind": "torch_dynamic"}}},
            "search.fallback.start: a torch_dynamic variant has no parts",
        ),
    ],
)
def test_bad_search_params_are_one_line(tmp_path, changes, message):
    raw = shipped()
    raw["search"].update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(QuantpipeError) as info:
        load_params(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_selection_split_may_not_be_the_evaluated_one(tmp_path):
    raw = shipped()
    raw["data"]["datasets"]["amazon"]["selection_split"] = "validation"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(QuantpipeError, match="data.datasets.amazon: selection_split: 'validation' is the eval_split"):
        load_params(path)


def test_fallback_leaves_the_most_damaging_parts_in_fp32_until_the_budget_holds(monkeypatch, tmp_path):
    """A constructed case: each part costs a known number of points; the fallback must rank them from the
    leave-one-out trials and exclude the worst ones, one at a time, until the budget (0.5 pt) is met."""
    cost = {"embeddings": 0.1, "layer.0": 2.0, "layer.1": 0.3, "layer.2": 1.0, "head": 0.2}

    def fake_trial(ctx, raw, parts, timed):
        delta = -sum(c for part, c in cost.items() if part not in parts)
        row = {"status": "ok", "variant": raw, "resolved": {}, "size_mb": 1.0, "datasets": {}, "worst_delta": delta}
        if not timed:
            return row
        speed = 2.0 - 0.1 * len(parts)
        return {
            **row,
            "datasets": {"sst2": {"speed_ratio": dict.fromkeys(("median", "min", "max"), speed)}},
            "speed_ratio": speed,
        }

    def fake_run_trials(fn, jobs, search, threads, done):
        for i, job in enumerate(jobs):
            done(i, fake_trial(*job))

    monkeypatch.setattr(runner, "run_trials", fake_run_trials)
    monkeypatch.setattr(runner, "graph_parts", lambda variant, ctx: list(cost))
    params = search_with(accuracy_budget=0.5, fallback={"start": "fastest", "max_steps": 8})

    class Ctx:
        pass

    ctx = Ctx()
    ctx.params = params
    cache = runner.TrialCache(tmp_path, "f")
    fastest = fake_trial(None, {"kind": "static", "calibration": "minmax_50", "preset": "arm64"}, (), True)
    out = runner.fallback(ctx, cache, [{**fastest, "trial": "t0", "exclude_parts": []}])
    assert [r["part"] for r in out["ranking"]] == ["layer.0", "layer.2", "layer.1", "head", "embeddings"]
    assert [s["exclude_parts"] for s in out["steps"]] == [
        [],
        ["layer.0"],
        ["layer.0", "layer.2"],
        ["layer.0", "layer.2", "layer.1"],
    ]
    assert out["met"] and out["steps"][-1]["worst_delta"] == pytest.approx(-0.3)
    assert not runner.within_budget(out["steps"][-2], params.search)
    assert runner.winner(out["steps"], params.search)[0]["exclude_parts"] == ["layer.0", "layer.2", "layer.1"]


# ---- the real stage on the tiny project -------------------------------------------------------------------


def set_search(root: Path, **changes) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["search"].update(changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def trials(root: Path) -> dict[str, dict]:
    return {r["label"]: r for r in json.loads((root / "reports/search/trials.json").read_text())["trials"]}


@pytest.fixture(scope="module")
def searched(built_project, tmp_path_factory) -> Path:
    """The tiny project after `dvc repro search/dvc.yaml` (grid of 8, 2 invalid), committed."""
    root = tmp_path_factory.mktemp("search") / "project"
    import shutil

    shutil.copytree(built_project, root, symlinks=True)
    out = run(root, "dvc", "repro", "search/dvc.yaml").stdout
    # the CPU record is always checked, the search's litter always swept
    assert ran_stages(out) == {"environment", "search/dvc.yaml:search_sweep", "search/dvc.yaml:search"}
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "search")
    return root


def test_the_search_measures_every_valid_trial_and_picks_a_winner(searched):
    rows = trials(searched)
    assert len(rows) == 8
    skipped = [r for r in rows.values() if r["status"] == "skipped"]
    assert len(skipped) == 2 and all("avx512_vnni" in r["label"] and "reduce_range=true" in r["label"] for r in skipped)
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 6
    for row in ok:
        assert set(row["datasets"]) == {"sst2", "amazon"}
        assert row["datasets"]["sst2"]["speed_ratio"]["min"] <= row["datasets"]["sst2"]["speed_ratio"]["median"]
        assert row["size_mb"] > 0
    summary = json.loads((searched / "metrics/search.json").read_text())
    assert summary["trials"] == {"tried": 8, "ok": 6, "failed": 0, "skipped": 2, "run_now": 6}
    report = (searched / "reports/search/search.md").read_text()
    assert "8 trials tried" in report and "## Pareto front" in report
    points = json.loads((searched / "reports/search/pareto.json").read_text())
    assert len(points) >= 6 and any(p["pareto"] for p in points)
    winner = json.loads((searched / "reports/search/winner.json").read_text())
    # the tiny project's budget is 100 points: a winner, scored on both the selection split and the report's
    assert set(winner["report"]) == {"sst2", "amazon"} and winner["winner"]["status"] == "ok"
    assert summary["winner"]["report"]["sst2"]["accuracy"] == pytest.approx(
        winner["report"]["sst2"]["accuracy"], abs=1e-6
    )
    assert "## Winner" in report and "report accuracy [95% CI]" in report


def test_a_second_repro_runs_nothing(searched):
    assert "search/dvc.yaml:search" not in json.loads(run(searched, "dvc", "status", "--json").stdout)
    assert ran_stages(run(searched, "dvc", "repro", "search/dvc.yaml").stdout) == {
        "environment",
        "search/dvc.yaml:search_sweep",
    }


def test_a_new_axis_value_runs_only_the_new_trials_and_a_failure_is_recorded(searched, tmp_path):
    import shutil

    root = tmp_path / "project"
    shutil.copytree(searched, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    space = params["search"]["space"]
    space["symmetric_weights"] = [True, False]  # 8 -> 16 points; the shipped value (true) keeps the old trials
    space["operators"] = [None, ["NoSuchOp"]]  # ... and each twice: ONNX Runtime cannot quantize NoSuchOp
    set_search(root, space=space)
    status = json.loads(run(root, "dvc", "status", "search/dvc.yaml", "--json").stdout)
    assert "search/dvc.yaml:search" in status
    run(root, "dvc", "repro", "search/dvc.yaml")
    summary = json.loads((root / "metrics/search.json").read_text())
    rows = trials(root)
    assert summary["trials"]["tried"] == 32 and summary["trials"]["skipped"] == 8
    # 6 old measured trials come from the cache; every new valid point is run (6 new weights, 12 NoSuchOp)
    assert summary["trials"]["run_now"] == 18
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 12 and all("NoSuchOp" in r["reason"] and "\n" not in r["reason"] for r in failed)


def test_a_bad_search_param_stops_the_stage_with_one_line_and_writes_nothing(built_project, tmp_path):
    import shutil

    root = tmp_path / "project"
    shutil.copytree(built_project, root, symlinks=True)
    set_search(root, strategy="gird")
    proc = run(root, "python", "stages/search.py", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: params.yaml: search.strategy: Input should be 'grid', 'random' or 'tpe' (got 'gird')"
    ]
    assert not (root / "metrics/search.json").exists() and not (root / "reports/search").exists()


def test_the_selection_split_is_disjoint_from_what_the_pipeline_uses(built_project):
    from quantpipe.data import read_prepared
    from quantpipe.search.selection import selection_data
    from quantpipe.training import training_sample

    params = load_params(built_project / "params.yaml")
    prepared = built_project / "data/prepared"
    selection = selection_data(params, prepared)
    assert set(selection) == {"sst2", "amazon"}
    chosen = {t for texts, _ in selection.values() for t in texts}
    assert len(selection["sst2"][0]) == 24 and len(selection["amazon"][0]) == 24
    train = read_prepared(prepared, "sst2", "train")
    assert not chosen & set(training_sample(train, params.base_model.train)["text"])
    for name in params.evaluate.datasets:
        assert not chosen & set(read_prepared(prepared, name, "eval")["text"])


def test_trials_run_as_ray_tasks_and_in_a_process_pool(built_project, tmp_path):
    """The same trials through a local Ray instance (2 CPUs) and a 2-process pool give the same accuracies."""
    import shutil

    results = {}
    for executor in ("ray", "local"):
        root = tmp_path / executor
        shutil.copytree(built_project, root, symlinks=True)
        set_search(root, space={"preset": ["avx512"], "per_channel": [False, True]}, workers=2, executor=executor)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["evaluate"]["threads"] = 1
        for variant in params["variants"].values():  # a stream needs a thread: the 2-stream variants keep 2 of theirs
            if variant.get("streams", 1) > 1:
                variant["threads"] = variant["streams"]
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(root, "python", "stages/search.py")
        rows = trials(root)
        assert [r["status"] for r in rows.values()] == ["ok", "ok"]
        results[executor] = {k: r["datasets"]["sst2"]["accuracy"] for k, r in rows.items()}
    assert results["ray"] == results["local"]


def test_promote_writes_the_winner_as_a_variant(searched, tmp_path):
    import shutil

    root = tmp_path / "project"
    shutil.copytree(searched, root, symlinks=True)
    winner = json.loads((root / "reports/search/winner.json").read_text())["winner"]
    before = (root / "params.yaml").read_text()
    run(root, "python", "-m", "quantpipe.search.promote", "--name", "found")
    params = load_params(root / "params.yaml")
    assert params.variants["found"].model_dump(mode="json") == winner["variant"]
    after = (root / "params.yaml").read_text().splitlines()
    assert [line for line in after if "found" not in line] == before.splitlines()  # every other line as it was
    run(root, "python", "-m", "quantpipe.search.promote", "--name", "found")  # again: replaced, not added twice
    assert (root / "params.yaml").read_text().splitlines() == after
    status = json.loads(run(root, "dvc", "status", "--json").stdout)
    assert "quantize@found" in status and "evaluate@found" in status


def test_tpe_asks_at_most_max_trials_and_reuses_the_cache(searched, tmp_path):
    import shutil

    root = tmp_path / "project"
    shutil.copytree(searched, root, symlinks=True)
    set_search(root, strategy="tpe", max_trials=5, seed=1)
    run(root, "python", "stages/search.py")
    summary = json.loads((root / "metrics/search.json").read_text())
    assert summary["strategy"] == "tpe"
    assert 1 <= summary["trials"]["tried"] <= 5  # distinct points; one asked twice counts once
    # every point of this space was measured by the grid run: the cache serves all of them
    assert summary["trials"]["run_now"] == 0
    assert summary["trials"]["ok"] + summary["trials"]["skipped"] == summary["trials"]["tried"]
