"""Metrics on a known confusion matrix, and the comparison table/report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantpipe.analysis import comparison_table, summary_metrics
from quantpipe.errors import QuantpipeError
from quantpipe.metrics import classification_metrics
from quantpipe.rendering import markdown_report, sensitivity_markdown


def test_known_confusion_matrix():
    # tp=3, fn=1, fp=2, tn=4
    y_true = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert m["n"] == 10


def rows():
    def row(variant, dataset, acc, sps):
        return {
            "variant": variant,
            "dataset": dataset,
            "accuracy": acc,
            "f1": acc,
            "samples_per_second": sps,
            "model_size_mb": 90.0 if "fp32" in variant else 22.5,
            "peak_rss_mb": 800.0 if variant == "pytorch_fp32" else 200.0,
            "peak_rss_serving_mb": 600.0 if variant == "pytorch_fp32" else 120.0,
            "load_seconds": 1.5,
            "kind": variant.split("_")[0],
            "n": 100,
            "model": "base",
            "max_length": 128 if variant == "static_naive" else 256,
            "truncation": "head_tail" if variant == "static_naive" else "head",
        }

    return pd.DataFrame(
        [
            row("pytorch_fp32", "sst2", 0.90, 100.0),
            row("onnx_fp32", "sst2", 0.90, 120.0),
            row("dynamic_int8", "sst2", 0.895, 250.0),
            row("static_naive", "sst2", 0.54, 400.0),
            row("pytorch_fp32", "amazon", 0.85, 50.0),
            row("dynamic_int8", "amazon", 0.80, 120.0),
            row("onnx_fp32", "amazon", 0.85, 60.0),
        ]
    )


def side_by_side(frame: pd.DataFrame) -> dict:
    """Two rounds per model, both at the row's samples/s."""
    out = {"rounds": 2, "max_samples": None, "datasets": {}}
    for _, r in frame.iterrows():
        timed = out["datasets"].setdefault(r["dataset"], {"examples": r["n"], "models": {}})
        timed["models"][r["variant"]] = {"samples_per_second": [r["samples_per_second"]] * 2}
    return out


def test_comparison_table_deltas_ratios_and_best():
    table = comparison_table(rows(), "pytorch_fp32", 0.01, side_by_side(rows()))
    sst2 = table[table.dataset == "sst2"].set_index("variant")
    assert sst2.loc["dynamic_int8", "accuracy_delta"] == pytest.approx(-0.005)
    assert sst2.loc["dynamic_int8", "speed_ratio"] == pytest.approx(2.5)
    assert sst2.loc["dynamic_int8", "size_ratio"] == pytest.approx(0.25)  # 22.5 MB against 90 MB
    assert sst2.loc["onnx_fp32", "peak_rss_ratio"] == pytest.approx(0.25)  # 200 MB against 800 MB
    assert sst2.loc["onnx_fp32", "peak_rss_serving_ratio"] == pytest.approx(0.2)  # 120 MB against 600 MB
    # the naive variant is fastest but outside the 1-point budget; dynamic int8 is the best within it
    assert sst2["best_within_budget"].to_dict() == {
        "static_naive": False,
        "dynamic_int8": True,
        "onnx_fp32": False,
        "pytorch_fp32": False,
    }
    amazon = table[table.dataset == "amazon"].set_index("variant")
    assert amazon.loc["onnx_fp32", "best_within_budget"]  # dynamic int8 lost 5 points there


def test_report_and_summary():
    table = comparison_table(rows(), "pytorch_fp32", 0.01, side_by_side(rows()))
    report = markdown_report(table, "pytorch_fp32", 0.01, side_by_side(rows()))
    assert (
        "## sst2" in report
        and "## amazon" in report
        and "100 examples scored; the first 100 timed in 2 rounds" in report
    )
    assert "**dynamic_int8**" in report and "+0.00 pt" in report and "2.50x [2.50, 2.50]" in report
    cells = report_row(report, "static_naive")  # the first table: sst2
    # kind, model and tokens read, size, peak RSS serving one text at a time / over the batched passes, load s
    assert cells[-5:] == ["static", "base, 128 head+tail", "22.5 (0.25x)", "120 / 200 (0.20x / 0.25x)", "1.50"]
    summary = summary_metrics(table)
    assert summary["sst2"]["static_naive"]["accuracy_delta"] == pytest.approx(-0.36)
    assert summary["sst2"]["static_naive"]["size_ratio"] == 0.25
    assert summary["sst2"]["static_naive"]["peak_rss_ratio"] == 0.25
    assert summary["sst2"]["static_naive"]["peak_rss_serving_ratio"] == 0.2


def report_row(report: str, variant: str) -> list[str]:
    """The cells of the first report table row of `variant`."""
    line = next(line for line in report.splitlines() if line.startswith(f"| {variant} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_missing_baseline_is_an_error():
    frame = rows()
    frame = frame[~((frame.variant == "pytorch_fp32") & (frame.dataset == "amazon"))]
    with pytest.raises(QuantpipeError, match=r"compare\.baseline: no 'pytorch_fp32' metrics.*amazon"):
        comparison_table(frame, "pytorch_fp32", 0.01, side_by_side(rows()))


def test_sensitivity_section_shows_each_part_and_the_sums():
    rows = [
        {"kind": "none", "part": "fp32", "nodes": 0, "accuracy": 0.90, "accuracy_delta": 0.0, "speed_ratio": 1.0},
        {"kind": "all", "part": "all", "nodes": 5, "accuracy": 0.85, "accuracy_delta": -0.05, "speed_ratio": 1.3},
        {
            "kind": "operator",
            "part": "MatMul",
            "nodes": 3,
            "accuracy": 0.88,
            "accuracy_delta": -0.02,
            "speed_ratio": 1.4,
        },
        {"kind": "operator", "part": "Add", "nodes": 2, "accuracy": 0.89, "accuracy_delta": -0.01, "speed_ratio": 0.9},
        {"kind": "layer", "part": "layer.0", "nodes": 5, "accuracy": 0.86, "accuracy_delta": -0.04, "speed_ratio": 1.0},
    ]
    text = sensitivity_markdown({"variant": "naive", "dataset": "sst2", "examples": 100, "rows": rows})
    assert "## Sensitivity of `naive` on sst2 (100 examples)" in text
    assert "| operator MatMul" in text and "-2.00 pt" in text and "1.40x" in text and "| layer layer.0" in text
    assert "Sum of the operator rows' Δ acc: -3.00 pt; the whole variant: -5.00 pt." in text
    assert "Sum of the layer rows' Δ acc: -4.00 pt" in text
