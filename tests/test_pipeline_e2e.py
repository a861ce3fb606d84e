"""The real `dvc repro` on tiny params (tiny random model, a few dozen samples) in a temporary copy of the repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ran_stages, run

pytestmark = pytest.mark.e2e
NAMES = ["pytorch_fp32", "onnx_fp32"]


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
    assert "## Sensitivity of `static_naive` on sst2 (16 examples)" in report and "| layer layer.1" in report
    assert "## Static against the fastest dynamic int8 variant, side by side" in report
    side = json.loads((project / "metrics/side_by_side.json").read_text())
    assert side["rounds"] == 2 and side["datasets"]["amazon"]["examples"] == 24
    for dataset in ("sst2", "amazon"):
        assert set(side["datasets"][dataset]["models"]) == set(variant_names(project))
        assert all(len(m["samples_per_second"]) == 2 for m in side["datasets"][dataset]["models"].values())
    summary = json.loads((project / "metrics/compare.json").read_text())
    assert set(summary) == {"sst2", "amazon"}
    assert summary["sst2"]["pytorch_fp32"]["speed_ratio"] == 1.0
    assert summary["sst2"]["static_int8"]["speed_vs_best_dynamic"] > 0
    assert summary["sst2"]["static_int8"]["samples_per_second_alone"] > 0
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
    # side_by_side (it times every model together) and compare read the variant names, so they list
    # `variants` too; nothing upstream or in other variants changes
    assert set(status) == {"quantize@dynamic_int8", "side_by_side", "compare"}
    assert ran_stages(run(project, "dvc", "repro").stdout) == {
        "quantize@dynamic_int8", "evaluate@dynamic_int8", "side_by_side", "compare"}
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
