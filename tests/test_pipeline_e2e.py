"""The real `dvc repro` on tiny params (tiny random model, a few dozen samples) in a temporary copy of the repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
NAMES = ["pytorch_fp32", "onnx_fp32"]


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tiny_params(model_dir: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    sets = params["data"]["datasets"]
    sets["sst2"].update(train_split="train[:64]", eval_split="validation[:40]")
    sets["amazon"].update(eval_split="validation[:24]")
    params["base_model"].update(encoder=str(model_dir))
    params["base_model"]["train"].update(max_samples=64, batch_size=16, learning_rate=1e-3, max_length=32)
    for cal in params["calibrations"].values():
        cal.update(num_samples=16, max_length=32)
    params["evaluate"].update(batch_size=16, max_length=64)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "project"
    files = run(REPO, "git", "ls-files", "-z").stdout.split("\0")
    for name in filter(None, files):
        if name == "dvc.lock" or name.startswith(("metrics/", "reports/")) or not (REPO / name).exists():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model), sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    proc = run(root, "dvc", "repro")
    project.first_run = proc.stdout
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "first run")
    return root


def variant_names(root: Path) -> list[str]:
    return NAMES + list(yaml.safe_load((root / "params.yaml").read_text())["variants"])


def test_repro_writes_every_metrics_file_and_the_report(project):
    for name in variant_names(project):
        for dataset, n in (("sst2", 40), ("amazon", 24)):
            metrics = json.loads((project / "metrics/eval" / name / f"{dataset}.json").read_text())
            assert metrics["variant"] == name and metrics["dataset"] == dataset and metrics["n"] == n
            for key in ("accuracy", "f1", "precision", "recall"):
                assert 0.0 <= metrics[key] <= 1.0
            assert metrics["samples_per_second"] > 0
    report = (project / "reports/compare.md").read_text()
    for name in variant_names(project):
        assert name in report
    summary = json.loads((project / "metrics/compare.json").read_text())
    assert set(summary) == {"sst2", "amazon"}
    assert summary["sst2"]["pytorch_fp32"]["speed_ratio"] == 1.0
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert "metrics/eval/dynamic_int8/sst2.json" in files and "metrics/compare.json" in files


def test_second_repro_runs_nothing(project):
    assert "up to date" in run(project, "dvc", "status").stdout
    assert ran_stages(run(project, "dvc", "repro").stdout) == set()


def test_one_variant_flag_reruns_only_that_variant(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"]["dynamic_int8"]["per_channel"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(project, "dvc", "status", "--json").stdout)
    # compare reads the variant names, so it lists `variants` too; nothing upstream or in other variants changes
    assert set(status) == {"quantize@dynamic_int8", "compare"}
    assert ran_stages(run(project, "dvc", "repro").stdout) == {
        "quantize@dynamic_int8", "evaluate@dynamic_int8", "compare"}
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "per-channel dynamic int8")
    diff = json.loads(run(project, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    changed = diff["metrics/eval/dynamic_int8/sst2.json"]
    assert changed["model_size_mb"]["old"] != changed["model_size_mb"]["new"]
    assert not any(path.startswith("metrics/eval/static_int8/") for path in diff)


def test_failing_stage_leaves_no_output(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"]["dynamic_int8"]["operators"] = ["Matmul"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(project, "dvc", "repro", "quantize@dynamic_int8", check=False)
    assert proc.returncode != 0
    assert "error: operators: ['Matmul'] cannot be quantized in dynamic mode" in proc.stderr + proc.stdout
    assert not (project / "models/quantized/dynamic_int8").exists()
    assert not list((project / "models/quantized").glob(".dynamic_int8.tmp-*"))
    assert "quantize@dynamic_int8" in json.loads(run(project, "dvc", "status", "--json").stdout)
    run(project, "git", "checkout", "params.yaml")
    run(project, "dvc", "checkout", "models/quantized/dynamic_int8")
    assert "up to date" in run(project, "dvc", "status").stdout
