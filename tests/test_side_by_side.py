"""Side-by-side timing: rotation, round-by-round ratios, and how the report uses them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from quantpipe.analysis import against_references, comparison_table, summary_metrics
from quantpipe.config.sections import EvaluateParams, LengthPolicy
from quantpipe.errors import QuantpipeError
from quantpipe.rendering import markdown_report, references_markdown
from quantpipe.side_by_side import round_order, round_orders, time_side_by_side
from quantpipe.statistics import paired_ratio


class FakeTokenizer:
    """`quantpipe.inference.Tokenizer`'s interface: token ids = the text's length in ids; pads with zeros."""

    def encode(self, texts, max_length):
        return [{"input_ids": [1] * len(t), "attention_mask": [1] * len(t)} for t in texts]

    def pad(self, features):
        width = max(len(f["input_ids"]) for f in features)
        return {k: np.array([f[k] + [0] * (width - len(f[k])) for f in features]) for k in features[0]}


class Recorder:
    """A classifier that logs the order it is called in: class 1 for batches of long texts."""

    def __init__(self, name, log, flip_after=None):
        self.name, self.log, self.calls, self.flip_after = name, log, 0, flip_after

    def __call__(self, batch):
        self.log.append(self.name)
        self.calls += 1
        long = batch["attention_mask"].sum(axis=1) > 3
        if self.flip_after is not None and self.calls > self.flip_after:
            long = ~long
        return np.stack([~long, long], axis=1).astype(float)


def cfg():
    return EvaluateParams(datasets=["sst2"], batch_size=2, max_length=16)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_round_orders_balance_positions_and_neighbours(n):
    names = [f"m{i}" for i in range(n)]
    orders = round_orders(names)
    assert len(orders) == (2 * n if n % 2 else n)
    assert all(sorted(order) == names for order in orders)
    positions = Counter((order[i], i) for order in orders for i in range(n))
    followers = Counter((order[i - 1], order[i]) for order in orders for i in range(1, n))
    assert len(positions) == n * n and len(set(positions.values())) == 1  # every model in every position, equally
    assert len(followers) == n * (n - 1) and len(set(followers.values())) == 1  # after every other model, equally
    assert round_order(names, len(orders)) == orders[0]  # rounds cycle through the design


# Williams designs written out by hand: every model once in each position, and right after every other
# model equally often (3 models: twice, over the six orders; 4 models: once, over the four orders)
WILLIAMS_ORDERS = {3: ["abc", "bca", "cab", "cba", "acb", "bac"], 4: ["abdc", "bcad", "cdba", "dacb"]}


@pytest.mark.parametrize("n", sorted(WILLIAMS_ORDERS))
def test_each_round_times_every_model_once_in_its_round_order(n):
    log: list[str] = []
    models = {name: Recorder(name, log) for name in "abcd"[:n]}
    texts = ["xx", "xxxxx", "x", "xxxxxx"]  # two batches of two
    orders = [*WILLIAMS_ORDERS[n], WILLIAMS_ORDERS[n][0]]  # one round more than the design: it starts again
    out = time_side_by_side(models, FakeTokenizer(), texts, cfg(), rounds=len(orders))
    timed = log[len(log) - 2 * n * len(orders) :]  # the timed passes come last, after the warm-up however done
    assert timed == [name for order in orders for name in order for _batch in range(2)]
    for result in out.values():
        assert result["labels"].tolist() == [0, 1, 0, 1]  # in the input order
        assert len(result["samples_per_second"]) == len(result["model_samples_per_second"]) == len(orders)
        assert all(s > 0 for s in result["samples_per_second"])
        # tokenization is timed apart, so the model-only rate is the higher one
        assert all(m >= s for m, s in zip(result["model_samples_per_second"], result["samples_per_second"]))


def test_slices_alternate_the_models_slice_by_slice_within_a_round():
    log: list[str] = []
    models = {name: Recorder(name, log) for name in "ab"}
    texts = ["xx", "xxxxx", "x", "xxxxxx", "xxxx", "x"]  # three slices of two texts: one batch each
    out = time_side_by_side(models, FakeTokenizer(), texts, cfg(), rounds=2, slices=3)
    timed = log[len(log) - 2 * 2 * 3 :]
    # round 0: slice 0 in order ab, slice 1 in ba, slice 2 in ab; round 1 goes on with the design (ba, ab, ba)
    assert timed == list("abbaabbaabba")
    for result in out.values():
        assert result["labels"].tolist() == [0, 1, 0, 1, 1, 0]  # the slices' labels, joined in the input order
        assert len(result["samples_per_second"]) == 2


def test_a_models_length_policy_reaches_its_tokenizer():
    seen: dict[str, list] = {}

    class Policies(FakeTokenizer):
        def encode(self, texts, length):
            seen.setdefault(length, []).extend(texts)
            return super().encode(texts, length)

    models = {name: Recorder(name, []) for name in "ab"}
    time_side_by_side(models, Policies(), ["xx", "x"], cfg(), rounds=1, lengths={"b": LengthPolicy(8, "head_tail")})
    assert set(seen) == {LengthPolicy(16), LengthPolicy(8, "head_tail")}  # a: evaluate.max_length, the head kept


def test_no_texts_is_a_clear_error():
    with pytest.raises(QuantpipeError, match="no texts to time"):
        time_side_by_side({"a": Recorder("a", [])}, FakeTokenizer(), [], cfg(), rounds=1)


def test_predictions_that_change_between_passes_are_an_error():
    log: list[str] = []
    # two warm-up calls, then the first timed pass (two batches) sets the predictions the second pass breaks
    models = {"steady": Recorder("steady", log), "flaky": Recorder("flaky", log, flip_after=4)}
    with pytest.raises(RuntimeError, match="flaky: predictions differ"):
        time_side_by_side(models, FakeTokenizer(), ["xx", "xxxxx", "x", "xxxxxx"], cfg(), rounds=2)


def test_paired_ratio_divides_round_by_round():
    # a load change in round 2 slows both models: the paired ratio stays 1.1 in every round
    r = paired_ratio([110.0, 55.0, 110.0], [100.0, 50.0, 100.0])
    assert r == pytest.approx({"median": 1.1, "min": 1.1, "max": 1.1})


def side_by_side_result():
    rounds = {
        "pytorch_fp32": [100.0, 50.0, 100.0],
        "dynamic_int8": [200.0, 100.0, 180.0],
        "dynamic_int8_o2": [210.0, 90.0, 190.0],
        "static_int8": [220.0, 104.0, 200.0],
        "static_naive": [150.0, 70.0, 150.0],
    }
    return {
        "rounds": 3,
        "max_samples": None,
        "datasets": {
            "sst2": {
                "examples": 10,
                "models": {
                    name: {"samples_per_second": r, "model_samples_per_second": r} for name, r in rounds.items()
                },
            }
        },
    }


def eval_rows():
    def row(variant, acc, sps):
        return {
            "variant": variant,
            "dataset": "sst2",
            "accuracy": acc,
            "f1": acc,
            "samples_per_second": sps,
            "model_size_mb": 90.0 if "fp32" in variant else 23.0,
            "peak_rss_mb": 400.0 if "fp32" in variant else 200.0,
            "peak_rss_serving_mb": 300.0 if "fp32" in variant else 150.0,
            "load_seconds": 0.5,
            "kind": "pytorch" if "fp32" in variant else variant.split("_")[0],
            "n": 10,
        }

    return pd.DataFrame(
        [
            row("pytorch_fp32", 0.90, 90.0),
            row("dynamic_int8", 0.895, 300.0),
            row("dynamic_int8_o2", 0.89, 150.0),
            row("static_int8", 0.897, 140.0),
            row("static_naive", 0.85, 120.0),
        ]
    )


def test_throughput_and_speed_ratio_come_from_the_side_by_side_rounds():
    table = comparison_table(eval_rows(), "pytorch_fp32", 0.01, side_by_side_result()).set_index("variant")
    # the evaluate rows' own samples/s (dynamic_int8 first with 300) are not used: side by side, static_int8 leads
    assert table.loc["static_int8", "samples_per_second"] == 200.0
    assert table.loc["static_int8", "best_within_budget"] and not table.loc["dynamic_int8", "best_within_budget"]
    assert table.loc["static_int8", "speed_ratio"] == pytest.approx(2.08)  # median of 2.2, 2.08, 2.0
    assert table.loc["static_int8", "speed_ratio_low"] == pytest.approx(2.0)
    assert table.loc["static_int8", "speed_ratio_high"] == pytest.approx(2.2)
    report = markdown_report(table.reset_index(), "pytorch_fp32", 0.01, side_by_side_result())
    assert "10 examples scored; the first 10 timed in 3 rounds" in report and "2.08x [2.00, 2.20]" in report


def test_side_by_side_on_other_examples_than_evaluate_is_an_error():
    data = side_by_side_result()
    data["datasets"]["sst2"]["examples"] = 8
    with pytest.raises(QuantpipeError, match="side_by_side: sst2 timed on 8 examples, expected 10 of the 10 evaluated"):
        comparison_table(eval_rows(), "pytorch_fp32", 0.01, data)
    data["max_samples"] = 8  # a cap: the first 8 of the 10 evaluated
    assert comparison_table(eval_rows(), "pytorch_fp32", 0.01, data)["samples_per_second"].max() == 200.0


def test_a_model_missing_from_the_side_by_side_run_is_an_error():
    data = side_by_side_result()
    del data["datasets"]["sst2"]["models"]["static_naive"]
    with pytest.raises(QuantpipeError, match="side_by_side: no rounds for 'static_naive' on 'sst2'"):
        comparison_table(eval_rows(), "pytorch_fp32", 0.01, data)


def test_best_model_against_the_fastest_reference():
    table = comparison_table(eval_rows(), "pytorch_fp32", 0.01, side_by_side_result())
    result = against_references(table, side_by_side_result(), ["dynamic_int8", "dynamic_int8_o2"])["sst2"]
    assert result["best"] == "static_int8"  # the fastest within budget, side by side
    assert result["reference"] == "dynamic_int8_o2"  # median 190 against 180
    assert result["ratio"] == pytest.approx({"median": 200 / 190, "min": 220 / 210, "max": 104 / 90})
    # no reference, or the best model is itself a reference: nothing to compare
    assert against_references(table, side_by_side_result(), []) == {}
    assert against_references(table, side_by_side_result(), ["static_int8", "dynamic_int8"]) == {}
    text = references_markdown({"sst2": result}, 3)
    assert "(3 rounds)" in text and "- sst2: `static_int8` against `dynamic_int8_o2`: 1.05x [1.05, 1.16]" in text
    summary = summary_metrics(table, {"sst2": result})
    assert summary["sst2"]["against_references"] == {
        "best": "static_int8",
        "fastest_reference": "dynamic_int8_o2",
        "speed_ratio": pytest.approx(200 / 190, abs=1e-4),
        "speed_ratio_low": pytest.approx(220 / 210, abs=1e-4),
        "speed_ratio_high": pytest.approx(104 / 90, abs=1e-4),
    }
    assert set(summary["sst2"]) == {*eval_rows()["variant"], "against_references"}
    assert "against_references" not in summary_metrics(table)["sst2"]
