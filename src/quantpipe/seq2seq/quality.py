"""Generation quality on a 0-100 scale, example by example: sentence chrF (`sacrebleu`: character 6-grams and word
2-grams, whitespace ignored, beta 2) or ROUGE-L F1 x 100 (`rouge-score`: lower-cased, ASCII letters and digits
only, no stemming); its mean with a bootstrap 95% CI, and against a reference model (the fp32 model): the fraction
of outputs identical to its outputs and the score difference, paired example by example, with its CI. For
punctuation restoration, the task's own scores: the marks at their word positions and the words kept."""

from __future__ import annotations

import re

import numpy as np

from quantpipe.errors import QuantpipeError
from quantpipe.statistics import bootstrap_ci


def mean_ci(
    values: list[float] | np.ndarray, n_resamples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-example scores, resampling examples with replacement.
    (Beside its only user for now: statistics.py is a dependency of the committed classification stages.)"""
    values = np.asarray(values, dtype=float)

    def mean(scores: np.ndarray, _: np.ndarray, axis: int = -1) -> np.ndarray:  # bootstrap_ci resamples pairs
        return np.mean(scores, axis=axis)

    return bootstrap_ci(values, values, mean, n_resamples, seed, confidence, vectorized=True)


def rouge_l(predictions: list[str], references: list[str]) -> np.ndarray:
    """ROUGE-L F1 x 100 of each prediction against its reference."""
    from rouge_score import rouge_scorer

    _same_length(predictions, references, "references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return 100 * np.array([scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)])


def chrf(predictions: list[str], references: list[str]) -> np.ndarray:
    """Sentence chrF of each prediction against its reference (sacrebleu's defaults)."""
    from sacrebleu.metrics import CHRF

    _same_length(predictions, references, "references")
    metric = CHRF()
    return np.array([metric.sentence_score(pred, [ref]).score for pred, ref in zip(predictions, references)])


METRICS = {"chrf": chrf, "rouge_l": rouge_l}


def identical_fraction(outputs: list[str], reference_outputs: list[str]) -> float:
    """The fraction of outputs equal, character for character, to the reference model's for the same input."""
    _same_length(outputs, reference_outputs, "reference outputs")
    return float(np.mean([a == b for a, b in zip(outputs, reference_outputs)]))


def generation_quality(
    predictions: list[str],
    references: list[str],
    metric: str,
    n_resamples: int,
    seed: int,
    reference_outputs: list[str] | None = None,
) -> dict:
    """The mean `metric` score (METRICS) with its bootstrap 95% CI; the same outputs scored against the
    references of other inputs (a seeded shuffle: what a model that ignored its input would score with these
    outputs); the number of examples and, given a reference model's outputs, the fraction identical to them and
    the mean per-example score difference to them (this model's minus the reference model's, on the same
    references) with its bootstrap 95% CI."""
    score = METRICS[metric]
    scores = score(predictions, references)
    low, high = mean_ci(scores, n_resamples, seed)
    shuffled = [references[i] for i in np.random.default_rng(seed).permutation(len(references))]
    out = {
        "metric": metric,
        "score": float(scores.mean()),
        "score_ci": [low, high],
        "score_shuffled": float(score(predictions, shuffled).mean()),
        "samples": len(scores),
    }
    if reference_outputs is not None:
        out["identical_to_reference"] = identical_fraction(predictions, reference_outputs)
        deltas = scores - score(reference_outputs, references)
        out["delta"] = float(deltas.mean())
        out["delta_ci"] = list(mean_ci(deltas, n_resamples, seed))
    return out


WORD = re.compile(r"[\w']+")
TOKEN = re.compile(r"[\w']+|[^\w\s']+")  # a word (as punctuation restoration's sources keep them) or a mark


def marked_words(text: str) -> tuple[list[str], list[str]]:
    """The words of `text`, lower-cased (runs of word characters and apostrophes, as the sources of `pairs:
    punctuation` keep them), and the punctuation right after each (`""` for none; marks before the first word are
    dropped)."""
    words: list[str] = []
    marks: list[str] = []
    for token in TOKEN.findall(text.lower()):
        if WORD.fullmatch(token):
            words.append(token)
            marks.append("")
        elif words:
            marks[-1] += token
    return words, marks


def punctuation_scores(outputs: list[str], references: list[str], sources: list[str]) -> dict:
    """Punctuation restoration's standard scores over all outputs: precision, recall and F1 of the marks at their
    word positions (a mark counts when the reference has the same mark after the same word; an output whose words
    differ from the reference's gets none right), and `words_kept`: the share of outputs whose words are the
    source's (a damaged or changed word shows here)."""
    _same_length(outputs, references, "references")
    _same_length(outputs, sources, "sources")
    hits = predicted = expected = kept = 0
    for output, reference, source in zip(outputs, references, sources):
        words, marks = marked_words(output)
        reference_words, reference_marks = marked_words(reference)
        kept += words == marked_words(source)[0]
        if words == reference_words:
            hits += sum(mark == wanted != "" for mark, wanted in zip(marks, reference_marks))
        predicted += sum(mark != "" for mark in marks)
        expected += sum(mark != "" for mark in reference_marks)
    precision = hits / predicted if predicted else 0.0
    recall = hits / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "words_kept": kept / len(outputs)}


def _same_length(predictions: list[str], other: list[str], what: str) -> None:
    if not predictions or len(predictions) != len(other):
        raise QuantpipeError(f"quality: {len(predictions)} outputs against {len(other)} {what} (need equal, non-zero)")
