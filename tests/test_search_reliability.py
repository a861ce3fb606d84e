"""The search's reliability (issue 23): a damaged trial cache file is re-run with a one-line warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from quantpipe.params import Params
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
