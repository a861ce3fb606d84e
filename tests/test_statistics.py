"""Statistics, environment record and the report's plots on known inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantpipe.analysis import comparison_table, pareto_front
from quantpipe.environment import cpu_info, environment
from quantpipe.io import read_json
from quantpipe.metrics import classification_metrics
from quantpipe.rendering import markdown_report, render_image, write_plots
from quantpipe.statistics import agreement, latency_percentiles, timing_summary


def test_constant_timing_series_has_no_spread():
    s = timing_summary([120.0] * 5)
    assert s["median"] == s["q1"] == s["q3"] == s["min"] == s["max"] == 120.0
    assert s["iqr"] == 0.0 and s["cv"] == 0.0 and s["repeats"] == 5


def test_timing_summary_quartiles_and_cv():
    s = timing_summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["q1"], s["median"], s["q3"]) == (2.0, 3.0, 4.0)
    assert s["cv"] == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / 3.0)


def test_latency_percentiles_in_ms():
    p = latency_percentiles(np.arange(1, 101) / 1000.0)  # 1..100 ms
    assert p["p50_ms"] == pytest.approx(50.5) and p["p99_ms"] == pytest.approx(99.01)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.where(rng.random(500) < 0.85, y, 1 - y)
    a = classification_metrics(y, p, n_resamples=500, seed=3)
    b = classification_metrics(y, p, n_resamples=500, seed=3)
    assert a == b
    for name in ("accuracy", "f1", "precision", "recall"):
        assert a[f"{name}_ci_low"] < a[name] < a[f"{name}_ci_high"]
    assert a["accuracy_ci_high"] - a["accuracy_ci_low"] == pytest.approx(2 * 1.96 * np.sqrt(0.85 * 0.15 / 500), rel=0.3)


def test_perfect_predictions_give_a_degenerate_interval():
    m = classification_metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]), n_resamples=100, seed=0)
    assert m["accuracy_ci_low"] == m["accuracy_ci_high"] == 1.0


def test_agreement_is_the_share_of_equal_labels_with_a_paired_interval():
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 2, 400)
    flipped = rng.random(400) < 0.1
    predicted = np.where(flipped, 1 - reference, reference)
    value, low, high = agreement(reference, predicted, 500, seed=0)
    assert value == pytest.approx(1 - flipped.mean())
    assert low < value < high and high - low == pytest.approx(2 * 1.96 * np.sqrt(0.9 * 0.1 / 400), rel=0.3)
    assert agreement(reference, predicted, 500, seed=0) == (value, low, high)  # seeded
    assert agreement(reference, reference, 100, seed=0) == (1.0, 1.0, 1.0)  # the baseline against itself
    assert agreement(reference, predicted, 0, seed=0) == (value, None, None)  # no resamples, no interval


def test_environment_records_flags_and_versions(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_tile\n")
    info = cpu_info(fake)
    assert info["model"] == "Test CPU"
    assert info["flags"]["avx512_vnni"] and info["flags"]["amx_tile"] and not info["flags"]["amx_int8"]
    env = environment()
    assert env["versions"]["onnxruntime"] and env["versions"]["torch"] and env["versions"]["optimum"]


def frame() -> pd.DataFrame:
    def row(v, acc, lat):
        return {
            "variant": v,
            "dataset": "sst2",
            "accuracy": acc,
            "accuracy_ci_low": acc - 0.02,
            "n": 10,
            "accuracy_ci_high": acc + 0.02,
            "f1": acc,
            "latency": {"p50_ms": lat, "p95_ms": lat * 1.5, "p99_ms": lat * 2},
            "model_size_mb": 20.0 if "fp32" in v else 5.0,
            "peak_rss_mb": 300.0 if "fp32" in v else 150.0,
            "peak_rss_serving_mb": 200.0 if "fp32" in v else 150.0,
            "load_seconds": 0.25,
            "kind": {"pytorch_fp32": "pytorch", "onnx_fp32": "onnx"}.get(v, "static"),
        }

    return pd.DataFrame(
        [row("pytorch_fp32", 0.9, 10), row("onnx_fp32", 0.9, 8), row("int8", 0.895, 4), row("naive", 0.6, 4)]
    )


ROUNDS = {
    "pytorch_fp32": [100, 100, 100],
    "onnx_fp32": [110, 110, 110],
    "int8": [300, 270, 330],
    "naive": [320, 320, 320],
}
SIDE_BY_SIDE = {
    "rounds": 3,
    "max_samples": None,
    "datasets": {"sst2": {"examples": 10, "models": {name: {"samples_per_second": r} for name, r in ROUNDS.items()}}},
}


def test_report_plots_and_pareto(tmp_path):
    table = comparison_table(frame(), "pytorch_fp32", 0.01, SIDE_BY_SIDE)
    assert table.set_index("variant").loc["int8", "speed_ratio_low"] == pytest.approx(2.7)
    assert pareto_front(table)["variant"].tolist() == ["onnx_fp32", "int8", "naive"]  # pytorch is dominated
    report = markdown_report(table, "pytorch_fp32", 0.01, SIDE_BY_SIDE, image="img.png")
    assert "0.8950 [0.875, 0.915]" in report and "3.00x [2.70, 3.30]" in report and "**int8**" in report
    assert "300.0 [285.0, 315.0]" in report  # median over the rounds [interquartile range]
    assert "4.0/6.0/8.0" in report and "![accuracy against throughput](img.png)" in report
    naive = next(line for line in report.splitlines() if line.startswith("| naive "))
    assert [c.strip() for c in naive.strip("|").split("|")][-5:] == [
        "static",
        "-",  # these metrics do not record the model and the tokens read
        "5.0 (0.25x)",
        "150 / 150 (0.75x / 0.50x)",
        "0.25",
    ]
    write_plots(table, tmp_path / "plots")
    assert {r["variant"] for r in read_json(tmp_path / "plots/pareto_sst2.json")} == set(table["variant"])
    assert len(read_json(tmp_path / "plots/latency_sst2.json")) == 12
    render_image(table, tmp_path / "img.png", "pytorch_fp32", 0.01, ["naive"])
    assert (tmp_path / "img.png").read_bytes()[:4] == b"\x89PNG"
