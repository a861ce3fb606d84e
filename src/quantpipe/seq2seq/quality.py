"""Generation quality on a 0-100 scale: sentence chrF (`sacrebleu`: character 6-grams and word 2-grams,
whitespace ignored, beta 2) or ROUGE-L F1 x 100 (`rouge-score`: lower-cased, ASCII letters and digits only, no
stemming), averaged over the examples, or punctuation restoration's F1 x 100 over the marks of all examples; the
score with a bootstrap 95% CI, and against a reference model (the fp32 model): the fraction of outputs identical to
its outputs and the score difference, paired example by example, with its CI. For punctuation restoration, the
task's own scores besides: precision, recall and the words kept."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quantpipe.errors import QuantpipeError
from quantpipe.statistics import bootstrap_ci


def statistic_ci(
    statistic: Callable[[np.ndarray], float], count: int, n_resamples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic(indices)` over `count` examples, resampling the examples with
    replacement (a paired statistic resamples the same examples for both of its sides)."""
    indices = np.arange(count)
    return bootstrap_ci(indices, indices, lambda chosen, _: statistic(chosen), n_resamples, seed, confidence)


@dataclass(frozen=True)
class Metric:
    """A quality score on a 0-100 scale: per-example statistics (`examples(predictions, references)`: one row per
    example) and the score of any set of their rows (`score(rows)`): the mean of a sentence score, or a corpus
    figure such as an F1 over counts summed across the examples."""

    examples: Callable[[list[str], list[str]], np.ndarray]
    score: Callable[[np.ndarray], float]


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


def _mean(rows: np.ndarray) -> float:
    return float(np.mean(rows))


METRICS = {
    "chrf": Metric(chrf, _mean),
    "rouge_l": Metric(rouge_l, _mean),
    "punctuation_f1": Metric(
        lambda outputs, references: punctuation_counts(outputs, references), lambda rows: 100 * f1(rows)
    ),
}


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
    """The `metric` score (METRICS) with its bootstrap 95% CI; the same outputs scored against the references of
    other inputs (a seeded shuffle: what a model that ignored its input would score with these outputs); the
    number of examples and, given a reference model's outputs, the fraction identical to them and the score
    difference to them (this model's minus the reference model's, on the same references) with its paired
    bootstrap 95% CI."""
    measure = METRICS[metric]
    rows = measure.examples(predictions, references)
    shuffled = [references[i] for i in np.random.default_rng(seed).permutation(len(references))]
    out = {
        "metric": metric,
        "score": measure.score(rows),
        "score_ci": list(statistic_ci(lambda chosen: measure.score(rows[chosen]), len(rows), n_resamples, seed)),
        "score_shuffled": measure.score(measure.examples(predictions, shuffled)),
        "samples": len(rows),
    }
    if reference_outputs is not None:
        out["identical_to_reference"] = identical_fraction(predictions, reference_outputs)
        base = measure.examples(reference_outputs, references)

        def delta(chosen: np.ndarray) -> float:
            return measure.score(rows[chosen]) - measure.score(base[chosen])

        out["delta"] = delta(np.arange(len(rows)))
        out["delta_ci"] = list(statistic_ci(delta, len(rows), n_resamples, seed))
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


def punctuation_counts(outputs: list[str], references: list[str]) -> np.ndarray:
    """Per output, [marks right, marks predicted, marks expected]: a mark is right when the reference has the same
    mark after the same word; an output whose words differ from its reference's gets none right."""
    _same_length(outputs, references, "references")
    counts = np.zeros((len(outputs), 3))
    for row, (output, reference) in enumerate(zip(outputs, references)):
        words, marks = marked_words(output)
        reference_words, reference_marks = marked_words(reference)
        right = (
            sum(mark == wanted != "" for mark, wanted in zip(marks, reference_marks)) if words == reference_words else 0
        )
        counts[row] = right, sum(mark != "" for mark in marks), sum(mark != "" for mark in reference_marks)
    return counts


def f1(counts: np.ndarray) -> float:
    """The F1 of `punctuation_counts` rows summed over the outputs: 2 x right / (predicted + expected)."""
    right, predicted, expected = np.asarray(counts).reshape(-1, 3).sum(axis=0)
    return float(2 * right / (predicted + expected)) if predicted + expected else 0.0


def punctuation_scores(outputs: list[str], references: list[str], sources: list[str]) -> dict:
    """Punctuation restoration's standard scores over all outputs: precision, recall and F1 of the marks at their
    word positions (`punctuation_counts`), and `words_kept`: the share of outputs whose words are the source's (a
    damaged or changed word shows here)."""
    _same_length(outputs, sources, "sources")
    right, predicted, expected = punctuation_counts(outputs, references).sum(axis=0)
    kept = sum(marked_words(output)[0] == marked_words(source)[0] for output, source in zip(outputs, sources))
    return {
        "precision": float(right / predicted) if predicted else 0.0,
        "recall": float(right / expected) if expected else 0.0,
        "f1": f1(np.array([right, predicted, expected])),
        "words_kept": kept / len(outputs),
    }


def _same_length(predictions: list[str], other: list[str], what: str) -> None:
    if not predictions or len(predictions) != len(other):
        raise QuantpipeError(f"quality: {len(predictions)} outputs against {len(other)} {what} (need equal, non-zero)")
