"""The real `dvc repro` on tiny params (tiny random model, a few dozen samples) in a temporary copy of the repo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ALWAYS_STALE, ENV, ran_stages, run

pytestmark = pytest.mark.e2e
NAMES = ["pytorch_fp32", "onnx_fp32"]


def variant_names(root: Path) -> list[str]:
    return NAMES + list(yaml.safe_load((root / "params.yaml").read_text())["variants"])


def variant_kinds(root: Path) -> dict[str, str]:
    variants = yaml.safe_load((root / "params.yaml").read_text())["variants"]
    return {"pytorch_fp32": "pytorch", "onnx_fp32": "onnx", **{n: v["kind"] for n, v in variants.items()}}


def test_repro_writes_every_metrics_file_and_the_report(project):
    kinds = variant_kinds(project)
    assert {"torch_dynamic", "openvino"} <= set(kinds.values())
    variants = yaml.safe_load((project / "params.yaml").read_text())["variants"]
    cpu_flags = json.loads((project / "metrics/environment.json").read_text())["cpu"]["flags"]
    has_bf16 = cpu_flags.get("avx512_bf16") or cpu_flags.get("amx_bf16")
    skipped = set()
    for name in variant_names(project):
        for dataset, n in (("sst2", 40), ("amazon", 24)):
            metrics = json.loads((project / "metrics/eval" / name / f"{dataset}.json").read_text())
            asks_bf16 = "bf16" in (variants.get(name, {}).get(k) for k in ("autocast", "inference_precision"))
            if asks_bf16 and not has_bf16:  # skipped on this CPU, with the reason, not run in f32
                assert "neither AVX512_BF16 nor AMX-BF16" in metrics["skipped"]
                skipped.add(name)
                continue
            assert metrics["variant"] == name and metrics["dataset"] == dataset and metrics["n"] == n
            for key in ("accuracy", "f1", "precision", "recall"):
                assert 0.0 <= metrics[key] <= 1.0
            assert metrics["latency"]["samples"] == 4 and metrics["peak_rss_mb"] > 0
            assert metrics["kind"] == kinds[name] and metrics["load_seconds"] > 0
            # each model is served in a fresh process that imports torch only for a PyTorch kind
            assert metrics["torch_imported"] is (kinds[name] in ("pytorch", "torch_dynamic"))
            if kinds[name] in ("dynamic", "static"):
                assert set(metrics["resolved"]) == {"preset"}  # `auto` resolved for this CPU, or the one set
            if kinds[name] == "openvino":  # what the CPU plugin computes in, read back from the compiled model
                asked = variants.get(name, {}).get("inference_precision", "default")
                computed = "f32" if asked == "f32" or not has_bf16 else "bf16"  # no hint: bf16 where the CPU has it
                assert metrics["resolved"]["inference_precision"] == computed
    report = (project / "reports/compare.md").read_text()
    for name in variant_names(project):
        assert name in report
    measured = [name for name in variant_names(project) if name not in skipped]
    assert "## Sensitivity of `static_naive` on sst2 (16 examples)" in report and "| layer layer.1" in report
    side = json.loads((project / "metrics/side_by_side.json").read_text())
    assert side["rounds"] == 2 and side["datasets"]["amazon"]["examples"] == 24
    for dataset in ("sst2", "amazon"):
        assert set(side["datasets"][dataset]["models"]) == set(measured)
        assert all(len(m["samples_per_second"]) == 2 for m in side["datasets"][dataset]["models"].values())
    summary = json.loads((project / "metrics/compare.json").read_text())
    assert set(summary) == {"sst2", "amazon"}
    for dataset in ("sst2", "amazon"):
        rounds = side["datasets"][dataset]["models"]
        for name in measured:  # the report's samples/s: median of that model's side-by-side rounds
            median = sum(rounds[name]["samples_per_second"]) / 2
            assert summary[dataset][name]["samples_per_second"] == pytest.approx(median, abs=1e-3)
    # the best model within budget against the fastest engine default recipe (compare.references), unless the
    # best model is itself one of them
    references = yaml.safe_load((project / "params.yaml").read_text())["compare"]["references"]
    assert "torch_dynamic_int8" in references
    for dataset in ("sst2", "amazon"):
        best = [n for n in measured if summary[dataset][n]["best_within_budget"]]
        assert len(best) == 1
        against = summary[dataset].get("against_references")
        if best[0] in references:
            assert against is None
            continue
        assert against["best"] == best[0] and against["fastest_reference"] in references
        assert against["speed_ratio_low"] <= against["speed_ratio"] <= against["speed_ratio_high"]
        assert f"- {dataset}: `{best[0]}` against `{against['fastest_reference']}`: " in report
        assert "## Against the engines' default recipes" in report
    shown = json.loads(run(project, "dvc", "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert "metrics/eval/dynamic_int8/sst2.json" in files and "metrics/compare.json" in files


def test_second_repro_runs_only_the_environment_check(project):
    # the environment stage always runs (the machine may have changed); its output did not change, so nothing
    # downstream of it re-runs
    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == ALWAYS_STALE
    assert ran_stages(run(project, "dvc", "repro").stdout) == {"sweep", "environment"}
    assert run(project, "git", "status", "--porcelain").stdout == ""


def test_forced_reruns_reproduce_the_locked_outputs(project):
    # fine-tune, the teacher's logits, distillation, calibration (plain and O2-fused graph) and quantization are
    # deterministic: forcing them again changes no hash in dvc.lock, so nothing downstream re-runs
    stages = [
        "base_model",
        "calibrate@minmax_320_o2",
        "calibrate@minmax_50",
        "quantize@static_int8",
        "quantize@dynamic_int8",
        "teacher_logits",
        "student@minilm_ffn768",
    ]
    ran = ran_stages(run(project, "dvc", "repro", "-f", "-s", *stages).stdout)
    assert ran == set(stages)
    assert run(project, "git", "status", "--porcelain").stdout == ""
    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == ALWAYS_STALE


def test_another_cpu_makes_the_timing_stages_stale(project, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Other CPU\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    env = {**ENV, "QUANTPIPE_CPUINFO": str(fake)}
    subprocess.run(["dvc", "repro", "environment"], cwd=project, env=env, check=True, capture_output=True)
    assert json.loads((project / "metrics/environment.json").read_text())["cpu"]["flags"]["avx512_vnni"]
    stale = set(json.loads(run(project, "dvc", "status", "--json").stdout))
    timing = {f"evaluate@{n}" for n in variant_names(project)[2:]} | {
        "evaluate_baseline@pytorch_fp32",
        "evaluate_baseline@onnx_fp32",
    }
    assert timing | {"side_by_side", "sensitivity"} <= stale
    # the quantize stages read the CPU record too (preset: auto picks this CPU's int8 kernels); fine-tune,
    # export and calibration do not
    assert "quantize@dynamic_int8" in stale
    assert not stale & {"base_model", "export", "calibrate@minmax_320"}


def test_one_variant_flag_reruns_only_that_variant(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"]["dynamic_int8"]["per_channel"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(project, "dvc", "status", "--json").stdout)
    # side_by_side (it times every model together), compare and ship read the variant names, so they list
    # `variants` too; nothing upstream or in other variants changes (environment: always checked)
    assert set(status) == ALWAYS_STALE | {"quantize@dynamic_int8", "side_by_side", "compare", "ship"}
    assert ran_stages(run(project, "dvc", "repro").stdout) == {
        "sweep",
        "environment",
        "quantize@dynamic_int8",
        "evaluate@dynamic_int8",
        "side_by_side",
        "compare",
        "ship",
    }
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "per-channel dynamic int8")
    diff = json.loads(run(project, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    changed = diff["metrics/eval/dynamic_int8/sst2.json"]
    assert changed["model_size_mb"]["old"] != changed["model_size_mb"]["new"]
    assert not any(path.startswith("metrics/eval/static_int8/") for path in diff)


def test_one_student_change_reruns_only_its_dependants(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["students"]["other"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(project, "dvc", "status", "--json").stdout)
    # the student and, through its folder, its export and its variant; nothing of the base model's or the other
    # student's (side_by_side, compare and ship are downstream of every variant; the search reads every student)
    assert set(status) == ALWAYS_STALE | {"student@other"}
    ran = ran_stages(run(project, "dvc", "repro").stdout)
    assert ran == {
        "sweep",
        "environment",
        "student@other",
        "student_export@other",
        "quantize@other_dynamic_int8",
        "evaluate@other_dynamic_int8",
        "side_by_side",
        "compare",
        "ship",
    }
    students = [name for name in params["students"] if name != "other"]
    assert not any(stage.endswith(tuple(students)) for stage in ran)


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
    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == ALWAYS_STALE


@pytest.mark.parametrize(
    "stage, args, leftover",
    [
        ("calibrate", ["--name", "minmax_320", "--out", "models/calibration/minmax_320"], "models/calibration"),
        ("download", ["--out", "data/raw"], "data"),
        ("base_model", ["--out", "models/pytorch/base"], "models/pytorch"),
        ("export", ["--out", "models/onnx/base"], "models/onnx"),
        ("quantize", ["--name", "static_int8", "--out", "models/quantized/static_int8"], "models/quantized"),
    ],
)
def test_a_killed_stage_leaves_nothing_git_or_dvc_sees(project, stage, args, leftover):
    proc = subprocess.Popen(
        [sys.executable, f"stages/{stage}.py", *args],
        cwd=project,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list((project / leftover).glob(".*.tmp-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the stage ended before it was killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((project / leftover).glob(f".*.tmp-{proc.pid}"))  # SIGKILL leaves its temporary output
    assert run(project, "git", "status", "--porcelain").stdout == ""
    assert set(json.loads(run(project, "dvc", "status", "--json").stdout)) == ALWAYS_STALE
    # `dvc repro` after a kill finds the stage's output gone (DVC removes it before running the stage) and restores
    # it from its run-cache without running the stage: the sweep stage removes the litter
    out = project / args[args.index("--out") + 1]
    shutil.rmtree(out) if out.is_dir() else out.unlink()
    proc = run(project, "dvc", "repro")
    assert ran_stages(proc.stdout) == {"sweep", "environment"} and out.exists()
    assert not list((project / leftover).glob(".*.tmp-*"))
    assert run(project, "git", "status", "--porcelain").stdout == ""
