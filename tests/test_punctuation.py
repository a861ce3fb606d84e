"""Punctuation restoration's own scores (marks at their word positions, words kept) and the copy baseline: what
doing nothing scores, beside the model, in metrics and in the report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from quantpipe.rendering import generation_markdown
from quantpipe.seq2seq.compare import answer, copy_baseline, task_scores
from quantpipe.seq2seq.quality import generation_quality, marked_words, punctuation_scores

REFERENCE = "well, i liked it. the end was sad?"
SOURCE = "well i liked it the end was sad"


def test_marked_words_keeps_each_words_following_mark():
    assert marked_words(REFERENCE) == (
        ["well", "i", "liked", "it", "the", "end", "was", "sad"],
        [",", "", "", ".", "", "", "", "?"],
    )
    assert marked_words("it's great -- really!!") == (["it's", "great", "really"], ["", "--", "!!"])


@pytest.mark.parametrize(
    ("output", "precision", "recall", "kept"),
    [
        (REFERENCE, 1.0, 1.0, 1.0),  # restored exactly
        ("well i liked it. the end was sad?", 1.0, 2 / 3, 1.0),  # a missing comma: recall falls
        ("well, i liked it. the end. was sad?", 3 / 4, 1.0, 1.0),  # an extra period: precision falls
        ("well, i loved it. the end was sad?", 0.0, 0.0, 0.0),  # a changed word: nothing counts, the word shows
        (SOURCE, 0.0, 0.0, 1.0),  # the source copied: every word kept, no mark
    ],
)
def test_punctuation_scores_on_hand_made_pairs(output, precision, recall, kept):
    scores = punctuation_scores([output], [REFERENCE], [SOURCE])
    assert scores["precision"] == pytest.approx(precision) and scores["recall"] == pytest.approx(recall)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert scores["f1"] == pytest.approx(f1) and scores["words_kept"] == kept


def test_scores_are_summed_over_outputs_not_averaged():
    scores = punctuation_scores([REFERENCE, SOURCE], [REFERENCE, REFERENCE], [SOURCE, SOURCE])
    assert (scores["precision"], scores["recall"], scores["words_kept"]) == (1.0, 0.5, 1.0)


def test_the_copy_row_is_in_the_report_and_says_when_the_model_does_not_beat_it():
    sources, references = [SOURCE] * 4, [REFERENCE] * 4
    copy = copy_baseline(sources, references, "chrf", 20, 0)
    assert copy["punctuation_f1"] == 0.0 and copy["words_kept"] == 1.0 and 0 < copy["quality"] < 100
    outputs = {"pytorch_fp32": ["well, i loved it. the end was sad?"] * 4}  # damages a word
    row = {
        "quality": copy["quality"] - 1,
        **task_scores(outputs, references, sources)["pytorch_fp32"],
        **dict.fromkeys(
            [
                "quality_ci_low",
                "quality_ci_high",
                "quality_delta",
                "quality_delta_ci_low",
                "quality_delta_ci_high",
                "identical_to_fp32",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "call_speedup_median",
                "call_speedup_min",
                "call_speedup_max",
                "call_speedup_no_cache_median",
                "call_speedup_no_cache_min",
                "call_speedup_no_cache_max",
                "tokens_per_second_ratio_median",
                "size_mb",
                "rss_after_load_mb",
                "first_call_increment_mb",
                "one_call_increment_mb",
                "peak_rss_mb",
                "quality_shuffled",
            ],
            1.0,
        ),
        "serving": "pytorch, 2 threads",
    }
    cfg = SimpleNamespace(metric="chrf", max_new_tokens=4, batch_size=2, threads=2, budget=1.0, references=[])
    timings = {"pytorch_fp32": {"examples_per_second": [1.0]}}
    report = generation_markdown(
        {"pytorch_fp32": row}, None, timings, None, cfg, 4, [], {"pytorch_bf16": "no bf16"}, copy
    )
    assert "Skipped on this CPU: `pytorch_bf16` (no bf16)." in report
    assert f"Doing nothing (each source copied as its output): chrF {copy['quality']:.2f}" in report
    assert f"| (the source copied) | 0.000 | 0.000 | 0.000 | 100.0% | {copy['chrf']:.2f} |" in report
    assert "**PyTorch fp32 does not beat copying its input on chrF**" in report


def test_the_budget_applies_to_the_task_metric_f1_over_all_marks_with_a_paired_ci():
    references = [REFERENCE] * 10
    exact, missing_comma = [REFERENCE] * 10, ["well i liked it. the end was sad?"] * 10
    fp32 = generation_quality(exact, references, "punctuation_f1", 200, 0)
    assert fp32["score"] == 100.0 and fp32["score_ci"] == [100.0, 100.0] and fp32["score_shuffled"] == 100.0
    worse = generation_quality(missing_comma, references, "punctuation_f1", 200, 0, reference_outputs=exact)
    assert worse["score"] == pytest.approx(100 * 0.8)  # P 1, R 2/3: F1 0.8, the same in every resample
    assert worse["delta"] == pytest.approx(-20.0) and worse["delta_ci"] == pytest.approx([-20.0, -20.0])
    half = exact[:5] + missing_comma[:5]  # F1 over the marks of all outputs, not a mean of per-output F1s
    mixed = generation_quality(half, references, "punctuation_f1", 200, 0, reference_outputs=exact)
    assert mixed["score"] == pytest.approx(100 * 2 * 25 / (25 + 30))
    assert mixed["delta_ci"][0] < mixed["delta"] < mixed["delta_ci"][1] <= 0
    rows = {
        "pytorch_fp32": {"quality_delta": 0.0, "call_speedup_median": 1.0},
        "fast": {"quality_delta": worse["delta"], "call_speedup_median": 5.0},
        "close": {"quality_delta": -0.5, "call_speedup_median": 3.0},
    }
    assert answer(rows, budget=1.0) == "close" and answer(rows, budget=25.0) == "fast"
