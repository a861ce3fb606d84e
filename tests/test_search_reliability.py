"""The search's reliability (issue 23): a damaged trial cache file is re-run with a one-line warning; the winner
does not change with timing noise (trials whose speed ranges overlap are tied, a stated rule chooses); the local
Ray instance listens on loopback only; an unreachable `ray_address` fails within seconds, in one line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ENV, run
from test_stages_cli import assert_one_line_error

from quantpipe.config import Params
from quantpipe.search import runner
from quantpipe.search.space import candidate, planned_points
from quantpipe.search.trial import TrialCache

REPO = Path(__file__).resolve().parents[1]

# ---- the trial cache ------------------------------------------------------------------------------------------

VALID = {"fingerprint": "f", "result": {"status": "failed", "reason": "from the cache"}}
DAMAGED = {
    "a JSON list": ("[]\n", "not a trial entry (a JSON list without a result object)"),
    "empty": ("", "empty"),
    "truncated": (json.dumps(VALID, indent=2)[:40], "not valid JSON (Expecting"),
    "merge conflict": (
        f"<<<<<<< HEAD\n{json.dumps(VALID)}\n=======\n{json.dumps(VALID)}\n>>>>>>> other\n",
        "a git merge-conflict marker on line 1",
    ),
    "no status": ('{"fingerprint": "f", "result": {}}', "its result's status is None, not 'ok' or 'failed'"),
    "ok without its keys": ('{"fingerprint": "f", "result": {"status": "ok"}}', "its result lacks datasets"),
}


def shipped_search(**changes):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["search"].update(changes)
    return Params.model_validate(raw)


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_cache_file_is_run_again_with_a_one_line_warning(case, tmp_path, monkeypatch, caplog):
    text, problem = DAMAGED[case]
    params = shipped_search(space={"preset": ["avx2"]})
    cand = candidate(params.search, planned_points(params.search)[0])
    cache = TrialCache(tmp_path, "f")
    cache.path(cand.trial_id).write_text(text)
    ran = []

    def fake_run_trials(fn, jobs, search, threads, done):
        for i, _ in enumerate(jobs):
            ran.append(i)
            done(i, {"status": "failed", "reason": "run now"})

    monkeypatch.setattr(runner, "run_trials", fake_run_trials)

    class Ctx:
        pass

    ctx = Ctx()
    ctx.params = params
    with caplog.at_level(logging.WARNING, logger="quantpipe.search.trial"):
        rows = runner.measure(ctx, cache, [cand])
    assert ran == [0] and rows[0]["reason"] == "run now" and rows[0]["cached"] is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith(f"{cache.path(cand.trial_id)}: {problem}") and "runs again" in warnings[0]
    # the trial's new result replaced the file (atomically: no temporary sibling is left)
    assert json.loads(cache.path(cand.trial_id).read_text())["result"]["reason"] == "run now"
    assert [p.name for p in tmp_path.iterdir()] == [f"{cand.trial_id}.json"]
    assert cache.get(cand.trial_id)["reason"] == "run now"


# ---- the winner among trials tied on speed --------------------------------------------------------------------


def timed_row(trial: str, worst_delta: float, size_mb: float, ratios: dict[str, tuple[float, float, float]]) -> dict:
    """A measured trial: per dataset its (min, median, max) round ratio; its speed the geometric mean of medians."""
    datasets = {
        ds: {"accuracy_delta": worst_delta, "speed_ratio": {"min": lo, "median": mid, "max": hi}}
        for ds, (lo, mid, hi) in ratios.items()
    }
    medians = [mid for _, mid, _ in ratios.values()]
    speed = (medians[0] * medians[1]) ** 0.5
    return {"trial": trial, "label": trial, "status": "ok", "worst_delta": worst_delta, "size_mb": size_mb,
            "datasets": datasets, "speed_ratio": speed}  # fmt: skip


def noisy_search(noise: dict[str, float]) -> list[dict]:
    """Four trials with fixed accuracies and sizes, each timed with `noise` added to its medians and ranges
    (inside the ranges' width); `slow` is clearly slower than the others whatever the noise."""
    base = {"a": (-0.4, 30.0, 1.10), "b": (-0.1, 30.0, 1.12), "c": (-0.1, 25.0, 1.08), "slow": (0.0, 20.0, 0.60)}
    rows = []
    for trial, (delta, size, speed) in base.items():
        s = speed + noise.get(trial, 0.0)
        rows.append(timed_row(trial, delta, size, {"sst2": (s - 0.08, s, s + 0.08), "amazon": (s - 0.1, s, s + 0.1)}))
    return rows


def test_the_winner_does_not_follow_timing_noise():
    search = shipped_search(accuracy_budget=0.5).search
    first = noisy_search({"a": 0.05})  # a's median is the fastest
    second = noisy_search({"c": 0.06})  # c's median is the fastest
    assert max(first, key=lambda r: r["speed_ratio"])["trial"] == "a"
    assert max(second, key=lambda r: r["speed_ratio"])["trial"] == "c"
    for rows in (first, second):
        best, tied = runner.winner(rows, search)
        # tied: a, b and c (slow's range is below the fastest's); b and c lose nothing, c's file is smaller
        assert [r["trial"] for r in tied] == ["c", "b", "a"] and best is tied[0]


def test_the_tie_rule_ends_on_the_trial_id_and_a_clear_winner_stands_alone():
    search = shipped_search(accuracy_budget=0.5).search
    same = [timed_row(t, -0.2, 10.0, {"sst2": (0.9, 1.0, 1.1), "amazon": (0.9, 1.0, 1.1)}) for t in ("z", "m", "k")]
    assert [r["trial"] for r in runner.winner(same, search)[1]] == ["k", "m", "z"]
    clear = [
        timed_row("fast", -0.4, 30.0, {"sst2": (1.9, 2.0, 2.1), "amazon": (1.9, 2.0, 2.1)}),
        timed_row("exact", 0.0, 5.0, {"sst2": (1.0, 1.05, 1.1), "amazon": (1.0, 1.05, 1.1)}),
        timed_row("over", -0.9, 5.0, {"sst2": (2.9, 3.0, 3.1), "amazon": (2.9, 3.0, 3.1)}),  # out of budget
    ]
    best, tied = runner.winner(clear, search)
    assert best["trial"] == "fast" and tied == [best]


# ---- the real stage on the tiny project, its timing replaced by controlled noise ------------------------------

# runs stages/search.py with each timing call's round ratios [m - 0.1, m, m + 0.1], m drifting by `drift` per call:
# the trials' speed ranges overlap, and the fastest median depends on the sign of the drift
DRIVER = textwrap.dedent(
    """
    import itertools, runpy, sys
    import quantpipe.search.trial as trial

    drift, calls = float(sys.argv[1]), itertools.count()

    def noisy_timing(classifiers, tokenizer, texts, cfg, rounds, desc="rounds", **policies):
        m = 1.0 + drift * next(calls)
        ratios = [m - 0.1, m, m + 0.1]
        return {"fp32": {"samples_per_second": [100.0] * 3}, "trial": {"samples_per_second": [100 * r for r in ratios]}}

    trial.time_side_by_side = noisy_timing
    sys.argv = ["stages/search.py"]
    runpy.run_path("stages/search.py", run_name="__main__")
    """
)


def set_params(root: Path, **search) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["search"].update(search)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def noisy_stage(root: Path, drift: float) -> subprocess.CompletedProcess:
    (root / "noisy_search.py").write_text(DRIVER)
    return run(root, sys.executable, "noisy_search.py", str(drift))


def copy_project(built_project: Path, to: Path) -> Path:
    shutil.copytree(built_project, to, symlinks=True)
    set_params(
        to,
        space={"preset": ["avx512"], "per_channel": [False, True], "reduce_range": [False, True]},
        timing={"rounds": 3, "max_samples": 8},
    )
    return to


@pytest.fixture(scope="module")
def drifting_up(built_project, tmp_path_factory) -> Path:
    """The tiny project after one search whose timing drifts up: the last trial timed has the fastest median."""
    root = copy_project(built_project, tmp_path_factory.mktemp("up") / "project")
    noisy_stage(root, 0.01)
    return root


def test_two_tiny_searches_with_different_timing_noise_pick_the_same_winner(drifting_up, built_project, tmp_path):
    down = copy_project(built_project, tmp_path / "project")
    noisy_stage(down, -0.01)
    winners = {}
    for root in (drifting_up, down):
        rows = json.loads((root / "reports/search/trials.json").read_text())["trials"]
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 4
        winners[root] = json.loads((root / "reports/search/winner.json").read_text())
        assert sorted(winners[root]["tied"]) == sorted(r["trial"] for r in ok)  # every range overlaps
        summary = json.loads((root / "metrics/search.json").read_text())
        assert summary["winner"]["tied"] == winners[root]["tied"]
        report = (root / "reports/search/search.md").read_text()
        assert "Tied on speed (4 trials" in report and f"Rule: {runner.TIE_RULE}." in report
    fastest = {
        root: max(
            (r for r in json.loads((root / "reports/search/trials.json").read_text())["trials"] if r["status"] == "ok"),
            key=lambda r: r["speed_ratio"],
        )["trial"]
        for root in (drifting_up, down)
    }
    assert fastest[drifting_up] != fastest[down]  # the noise alone would have picked two different winners
    assert winners[drifting_up]["winner"]["trial"] == winners[down]["winner"]["trial"]
    assert winners[drifting_up]["tied"] == winners[down]["tied"]


def test_a_damaged_cache_file_is_run_again_by_the_stage(drifting_up, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(drifting_up, root, symlinks=True)
    files = sorted((root / "metrics/search/trials").glob("*.json"))
    damaged = files[0].relative_to(root)
    (root / damaged).write_text("[]\n")
    proc = noisy_stage(root, 0.01)
    warnings = [
        line[line.index("WARNING") :] for line in proc.stderr.splitlines() if "WARNING" in line and "trials/" in line
    ]
    assert warnings == [f"WARNING quantpipe.search.trial: {damaged}: {DAMAGED['a JSON list'][1]}; the trial runs again"]
    assert json.loads((root / "metrics/search.json").read_text())["trials"]["run_now"] == 1
    assert set(json.loads((root / damaged).read_text())) == {"fingerprint", "result"}


# ---- Ray ------------------------------------------------------------------------------------------------------

LISTENING = textwrap.dedent(
    """
    import json, os, socket, psutil, ray
    from quantpipe.search.executors import run_ray

    def pid():
        return os.getpid()

    pids = []
    run_ray(pid, [()], 1, lambda i, result: pids.append(result), "ray", None, 1)
    sockets = set()
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and not conn.raddr):
                    sockets.add((proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    ray.shutdown()
    print(json.dumps({"task": pids, "sockets": sorted(sockets)}))
    """
)


def test_the_local_ray_instance_listens_on_loopback_only(tmp_path):
    pytest.importorskip("ray")
    proc = subprocess.run(
        [sys.executable, "-c", LISTENING],
        cwd=tmp_path,
        env={**ENV, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), ENV.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(found["task"]) == 1
    names = {name for name, _, _ in found["sockets"]}
    assert "gcs_server" in names and "raylet" in names, found  # the Ray processes were seen
    outside = [s for s in found["sockets"] if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not outside, f"listening beyond loopback: {outside}"


def test_an_unreachable_ray_address_fails_within_seconds_in_one_line(project):
    set_params(project, executor="ray", ray_address="127.0.0.1:1")
    proc = subprocess.run(
        [sys.executable, "stages/search.py"],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_line_error(
        proc, "error: params.yaml: search.ray_address: 127.0.0.1:1: no Ray cluster answers there (Connection refused)"
    )
    assert not (project / "metrics/search.json").exists() and not (project / "reports/search").exists()
