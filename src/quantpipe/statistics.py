"""Statistics a skeptical reader asks for: bootstrap confidence intervals and timing spread."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    vectorized: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `metric(y_true, y_pred)`, resampling examples (pairs) with replacement."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # every resample equal: CI is the value
        result = stats.bootstrap(
            (y_true, y_pred),
            metric,
            paired=True,
            vectorized=vectorized,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if np.isnan(low) or np.isnan(high):
        value = float(np.asarray(metric(y_true, y_pred)))
        return value, value
    return float(low), float(high)


def timing_summary(values: list[float] | np.ndarray) -> dict[str, float]:
    """Median, quartiles, min/max and coefficient of variation (std/mean) of repeated measurements."""
    arr = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(arr, [25, 50, 75])
    mean = arr.mean()
    return {
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "cv": float(arr.std(ddof=1) / mean) if len(arr) > 1 and mean else 0.0,
        "repeats": len(arr),
    }


def latency_percentiles(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99 latency in milliseconds."""
    p50, p95, p99 = np.percentile(np.asarray(seconds, dtype=float) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def paired_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """Speed ratio round by round (num[i] / den[i], both timed in round i): median, min and max."""
    ratios = np.asarray(num, dtype=float) / np.asarray(den, dtype=float)
    return {"median": float(np.median(ratios)), "min": float(ratios.min()), "max": float(ratios.max())}


def _share_equal(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a == b, axis=axis)


def agreement(
    reference: list[int] | np.ndarray, predicted: list[int] | np.ndarray, n_resamples: int, seed: int
) -> tuple[float, float | None, float | None]:
    """Share of `predicted` equal to `reference` (two models' labels on the same texts) and, with `n_resamples`
    > 0, its paired percentile bootstrap 95% CI (None, None without)."""
    reference, predicted = np.asarray(reference), np.asarray(predicted)
    value = float(_share_equal(reference, predicted))
    if not n_resamples:
        return value, None, None
    low, high = bootstrap_ci(reference, predicted, _share_equal, n_resamples, seed, vectorized=True)
    return value, low, high
