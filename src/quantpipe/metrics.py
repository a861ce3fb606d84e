"""Classification metrics (scikit-learn) with paired bootstrap 95% confidence intervals (scipy)."""

from __future__ import annotations

from functools import partial

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from quantpipe.statistics import bootstrap_ci

NAMES = ("accuracy", "f1", "precision", "recall")


def _sklearn_scorers(binary: bool) -> dict:
    average = "binary" if binary else "macro"
    return {
        "accuracy": accuracy_score,
        "f1": partial(f1_score, average=average, zero_division=0),
        "precision": partial(precision_score, average=average, zero_division=0),
        "recall": partial(recall_score, average=average, zero_division=0),
    }


def _binary_counts(y_true: np.ndarray, y_pred: np.ndarray, axis: int):
    positive, predicted = y_true == 1, y_pred == 1
    tp = np.sum(positive & predicted, axis=axis)
    return tp, np.sum(~positive & predicted, axis=axis), np.sum(positive & ~predicted, axis=axis)


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def _binary_vectorized() -> dict:
    """The same four scores from confusion counts, vectorized over bootstrap resamples (`axis`), so that
    scipy.stats.bootstrap needs one call per metric instead of one scikit-learn call per resample."""

    def accuracy(t, p, axis=-1):
        return np.mean(t == p, axis=axis)

    def precision(t, p, axis=-1):
        tp, fp, _ = _binary_counts(t, p, axis)
        return _ratio(tp, tp + fp)

    def recall(t, p, axis=-1):
        tp, _, fn = _binary_counts(t, p, axis)
        return _ratio(tp, tp + fn)

    def f1(t, p, axis=-1):
        tp, fp, fn = _binary_counts(t, p, axis)
        return _ratio(2 * tp, 2 * tp + fp + fn)

    return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = 0, seed: int = 0
) -> dict[str, float]:
    """Accuracy and (binary, or macro for more classes) F1, precision, recall from scikit-learn; with
    `n_resamples` > 0 each also gets `<name>_ci_low`/`<name>_ci_high`: a paired percentile bootstrap 95% CI."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    binary = set(np.union1d(y_true, y_pred).tolist()) <= {0, 1}
    resample_scorers = _binary_vectorized() if binary else _sklearn_scorers(binary)
    out: dict[str, float] = {"n": len(y_true)}
    for name, score in _sklearn_scorers(binary).items():
        out[name] = float(score(y_true, y_pred))
        if n_resamples:
            low, high = bootstrap_ci(y_true, y_pred, resample_scorers[name], n_resamples, seed, vectorized=binary)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out
