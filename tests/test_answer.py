"""The compare stage's answer: agreement with the baseline, models skipped on this CPU, the report's first section,
metrics/answer.json and the picture's labels, on a small fake metrics directory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from quantpipe.analysis import (
    collect_metrics,
    comparison_table,
    skipped_models,
    summary_metrics,
    the_answer,
    with_agreement,
)
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, read_json, write_json
from quantpipe.rendering import _label_groups, _place_labels, markdown_report, render_image

N = 200
# model -> (accuracy, samples/s per round, p50 ms, texts on which it disagrees with the baseline)
MODELS = {
    "pytorch_fp32": (0.90, [100, 100, 100], 10.0, 0),
    "onnx_fp32": (0.90, [120, 118, 122], 8.0, 0),
    "int8": (0.895, [300, 290, 310], 4.0, 10),
    "int8_twin": (0.893, [295, 295, 305], 2.0, 12),  # within budget, a hair slower: the rounds do not rank them
    "fast_ref": (0.80, [400, 390, 410], 3.0, 40),  # an engine default recipe, faster but 10 points down
}
SKIPPED = {"ov_bf16": "no AVX512_BF16 or AMX on this CPU"}
ENVIRONMENT = {"cpu": {"model": "Test CPU", "machine": "x86_64", "cores": 2, "flags": {"avx2": True}}, "versions": {}}


def metrics_row(name: str, accuracy: float, p50: float) -> dict:
    return {
        "variant": name,
        "kind": "pytorch" if name == "pytorch_fp32" else "onnx",
        "dataset": "sst2",
        "n": N,
        "accuracy": accuracy,
        "accuracy_ci_low": accuracy - 0.02,
        "accuracy_ci_high": accuracy + 0.02,
        "f1": accuracy,
        "latency": {"p50_ms": p50, "p95_ms": p50 * 1.5, "p99_ms": p50 * 2, "samples": 20},
        "model_size_mb": 90.0,
        "peak_rss_mb": 500.0,
        "peak_rss_serving_mb": 400.0,
        "load_seconds": 0.5,
    }


@pytest.fixture
def run(tmp_path):
    """What the evaluate and side_by_side stages leave for compare: metrics/eval, predictions, side_by_side."""
    baseline = np.random.default_rng(0).integers(0, 2, N)
    side_by_side = {"rounds": 3, "max_samples": None, "datasets": {"sst2": {"examples": N, "models": {}}}}
    for name, (accuracy, rounds, p50, flips) in MODELS.items():
        labels = baseline.copy()
        labels[:flips] = 1 - labels[:flips]
        write_json(tmp_path / "eval" / name / "sst2.json", metrics_row(name, accuracy, p50))
        write_json(tmp_path / "predictions" / name / "sst2.json", {"labels": labels.tolist()})
        timed = {"samples_per_second": rounds} | ({"streams": 2} if name == "int8" else {})
        side_by_side["datasets"]["sst2"]["models"][name] = timed
    for name, reason in SKIPPED.items():  # what the evaluate stage writes for a variant skipped on this CPU
        skipped = {"variant": name, "kind": "openvino", "dataset": "sst2", "skipped": reason}
        write_json(tmp_path / "eval" / name / "sst2.json", skipped)
        write_json(tmp_path / "predictions" / name / "sst2.json", {"labels": []})
    metrics = collect_metrics(tmp_path / "eval", [*MODELS, *SKIPPED], ["sst2"])
    table = comparison_table(metrics, "pytorch_fp32", 0.01, side_by_side)
    table = with_agreement(table, tmp_path / "predictions", "pytorch_fp32", 200, 0)
    return {"metrics": metrics, "table": table, "side_by_side": side_by_side, "dir": tmp_path}


def test_agreement_with_the_baseline(run):
    table = run["table"].set_index("variant")
    assert table.loc["pytorch_fp32", "agreement"] == table.loc["onnx_fp32", "agreement"] == 1.0
    assert table.loc["int8", "agreement"] == pytest.approx(1 - 10 / N)
    assert table.loc["fast_ref", "agreement"] == pytest.approx(1 - 40 / N)
    assert table.loc["int8", "agreement_ci_low"] < 0.95 < table.loc["int8", "agreement_ci_high"]
    summary = summary_metrics(run["table"])["sst2"]
    assert summary["int8"]["agreement"] == 0.95 and summary["int8"]["agreement_ci_high"] <= 1.0
    report = markdown_report(run["table"], "pytorch_fp32", 0.01, run["side_by_side"])
    line = next(line for line in report.splitlines() if line.startswith("| **int8** "))
    assert "| 0.9500 [" in line and "| 2 " in line  # agree [95% CI], then streams
    assert "agree [95% CI]" in report and "| streams " in report


def test_missing_or_short_predictions_are_an_error(run):
    table, predictions = run["table"], run["dir"] / "predictions"
    write_json(predictions / "int8" / "sst2.json", {"labels": [0, 1]})
    with pytest.raises(QuantpipeError, match=r"int8/sst2.json: 2 labels for the 200 texts scored"):
        with_agreement(table, predictions, "pytorch_fp32", 0, 0)
    (predictions / "int8" / "sst2.json").unlink()
    with pytest.raises(QuantpipeError, match=r"predictions not found \(run the evaluate stage for 'int8'\)"):
        with_agreement(table, predictions, "pytorch_fp32", 0, 0)


def test_a_skipped_variant_is_left_out_and_listed_with_its_reason(run):
    assert skipped_models(run["metrics"]) == SKIPPED
    assert "ov_bf16" not in set(run["table"]["variant"])  # nor in the best choice, the answer or the plot
    assert "ov_bf16" not in summary_metrics(run["table"])["sst2"]
    answer = the_answer(run["table"], run["side_by_side"], ["fast_ref", "ov_bf16"])
    assert answer["sst2"]["fastest_reference"] == "fast_ref"
    report = markdown_report(
        run["table"], "pytorch_fp32", 0.01, run["side_by_side"], answer=answer, skipped=skipped_models(run["metrics"])
    )
    assert "Skipped on this CPU: `ov_bf16` (no AVX512_BF16 or AMX on this CPU)." in report
    assert not any(line.startswith("| ov_bf16") for line in report.splitlines())


def test_the_answer_file(run):
    answer = the_answer(run["table"], run["side_by_side"], ["fast_ref"])["sst2"]
    assert answer == {
        "ship": "int8",
        "streams": 2,
        "speed_ratio": 3.0,
        "speed_ratio_low": 2.9,
        "speed_ratio_high": 3.1,
        "accuracy_delta": -0.005,
        "agreement": 0.95,
        "agreement_ci_low": pytest.approx(0.92, abs=0.015),
        "agreement_ci_high": pytest.approx(0.98, abs=0.015),
        "runner_up": "int8_twin",  # 300 against 295 samples/s, but 290/295 < 1 < 300/295: not ranked
        "vs_runner_up": round(310 / 305, 4),
        "vs_runner_up_low": round(290 / 295, 4),
        "vs_runner_up_high": round(300 / 295, 4),
        "ranked": False,
        "fastest_reference": "fast_ref",  # outside the budget, and faster in every round
        "vs_reference": 0.75,
        "vs_reference_low": round(290 / 390, 4),
        "vs_reference_high": round(310 / 410, 4),
        "ranked_vs_reference": True,
        "latency_best": "int8_twin",  # one caller at batch size 1 picks another model
        "latency_best_p50_ms": 2.0,
        "ship_p50_ms": 4.0,
    }
    # the model to ship is itself a reference: named, no ratio to itself
    itself = the_answer(run["table"], run["side_by_side"], ["int8"])["sst2"]
    assert itself["fastest_reference"] == "int8" and "vs_reference" not in itself


def test_the_report_opens_with_the_answer(run):
    answer = the_answer(run["table"], run["side_by_side"], ["fast_ref"])
    report = markdown_report(
        run["table"], "pytorch_fp32", 0.01, run["side_by_side"], ENVIRONMENT, answer=answer, skipped=SKIPPED
    )
    assert "200 examples scored; the first 200 timed in 3 rounds." in report
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings == ["## The answer", "## How it was measured", "## sst2"]
    head = report[: report.index("## How it was measured")]
    assert head.index("CPU: **Test CPU**") < head.index("## The answer") < head.index("Skipped on this CPU")
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip() for line in head.splitlines() if line.startswith("|")
    }
    assert rows["ship: most samples/s within budget"] == "**int8** (2 streams)"
    assert rows["speed vs `pytorch_fp32`"] == "3.00x [2.90, 3.10]"
    assert rows["vs the runner-up within budget"] == "1.02x [0.98, 1.02] `int8_twin`: not ranked"
    assert rows["vs the fastest engine default"] == "0.75x [0.74, 0.76] `fast_ref`"
    assert rows["Δ acc"] == "-0.50 pt" and rows["agreement with `pytorch_fp32` [95% CI]"].startswith("0.9500 [")
    assert rows["lowest latency within budget (bs 1, p50)"] == "`int8_twin` 2.0 ms"
    assert "- sst2: `int8` is not ranked against the runner-up `int8_twin`:" in head
    assert "- sst2: the engine default `fast_ref` is faster than `int8`: 0.75x [0.74, 0.76]." in head
    assert "`int8_twin` has the lowest latency within budget: p50 2.0 ms against `int8`'s 4.0 ms." in head


def test_the_picture_groups_coincident_models_and_keeps_labels_apart(run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    render_image(run["table"], tmp_path / "img.png", "pytorch_fp32", 0.01, ["fast_ref"])
    assert (tmp_path / "img.png").read_bytes()[:4] == b"\x89PNG"
    # three fp32 models at one spot, two more next to each other: one label for the three
    group = pd.DataFrame(
        {
            "variant": ["pytorch_fp32", "onnx_fp32", "openvino_fp32", "a", "b", "c"],
            "samples_per_second": [100.0, 100.5, 100.2, 300.0, 305.0, 200.0],
            "accuracy": [0.9, 0.9, 0.9, 0.89, 0.893, 0.85],
        }
    )
    fig, ax = plt.subplots()
    ax.scatter(group["samples_per_second"], group["accuracy"])
    ax.margins(0.1)
    labels = _label_groups(ax, group)
    assert [text for _, _, text in labels] == ["pytorch_fp32, openvino_fp32, onnx_fp32", "c", "a", "b"]
    _place_labels(ax, labels)
    renderer = fig.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def test_evaluate_writes_a_skipped_variant_without_serving_it(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    name = next(n for n, v in params["variants"].items() if v["kind"] == "dynamic")
    write_json(tmp_path / "quantized" / name / VARIANT_FILE, {"kind": "dynamic", "params": {}, "skipped": "no bf16"})
    for dataset in params["evaluate"]["datasets"]:
        (tmp_path / "prepared" / dataset).mkdir(parents=True)
        pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(
            tmp_path / "prepared" / dataset / "eval.parquet"
        )
    (tmp_path / "base").mkdir()  # never loaded: nothing is served
    paths = {p: str(tmp_path / p) for p in ("base", "onnx", "quantized", "prepared", "predictions")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/evaluate.py"), "--name", name, "--out", str(tmp_path / "eval" / name)]
        + [arg for option, path in paths.items() for arg in (f"--{option}", path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for dataset in params["evaluate"]["datasets"]:
        assert read_json(tmp_path / "eval" / name / f"{dataset}.json") == {
            "variant": name,
            "kind": "dynamic",
            "dataset": dataset,
            "skipped": "no bf16",
        }
        assert read_json(tmp_path / "predictions" / name / f"{dataset}.json")["labels"] == []
    assert f"{name}/sst2: skipped on this CPU: no bf16" in proc.stdout


@pytest.mark.parametrize("flags,says", [({"avx2": True}, False), ({"avx2": True, "amx_bf16": True}, True)])
def test_the_report_says_onnx_runtime_has_no_bf16_where_the_cpu_has_it(run, flags, says):
    environment = {**ENVIRONMENT, "cpu": {**ENVIRONMENT["cpu"], "flags": flags, "family_model": "6/143"}}
    report = markdown_report(run["table"], "pytorch_fp32", 0.01, run["side_by_side"], environment)
    assert "CPU: **Test CPU** (family/model 6/143)" in report
    assert ("ONNX Runtime's CPU provider has no bf16 arithmetic" in report) is says
