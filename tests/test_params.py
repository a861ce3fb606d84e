"""The params schema: the shipped params.yaml is valid, and each kind of mistake is one clear line."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO

from quantpipe.config import load_params
from quantpipe.config.registry import KINDS, get_kind
from quantpipe.errors import QuantpipeError

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def error_for(tmp_path, mutate) -> str:
    data = copy.deepcopy(DEFAULT)
    mutate(data)
    with pytest.raises(QuantpipeError) as info:
        load_params(write(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    return message


BUILDABLE = [k for k in KINDS if not get_kind(k).baseline]


def test_shipped_params_are_valid():
    params = load_params(REPO / "params.yaml")
    kinds = {v.kind for v in params.variants.values()}
    assert {"dynamic", "static", "torch_dynamic"} <= kinds <= set(BUILDABLE)
    for variant in params.variants.values():
        assert isinstance(variant, get_kind(variant.kind).params)  # each validated by its kind's own params
    assert "torch_dynamic_int8" in params.compare.references
    assert set(params.compare.references) <= set(params.variants)
    assert set(params.evaluate.datasets) == {"sst2", "amazon"}


def test_unknown_preset(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(preset="avx9"))
    assert "variants.dynamic_int8.preset" in msg and "avx9" in msg and "avx512_vnni" in msg


def test_unknown_variant_kind(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(kind="weird"))
    assert msg.endswith(f"variants.dynamic_int8.kind: unknown 'weird' (variant kinds: {', '.join(BUILDABLE)})")
    assert "onnx" not in BUILDABLE and "pytorch" in BUILDABLE  # onnx only serves its baseline; pytorch also bf16


@pytest.mark.parametrize(
    ("change", "got"),
    [
        (lambda v: v.update(kind="onnx"), "'onnx' is a baseline's kind"),
        (lambda v: v.pop("kind"), "missing"),
    ],
)
def test_variant_kind_must_be_a_buildable_one(tmp_path, change, got):
    msg = error_for(tmp_path, lambda d: change(d["variants"]["dynamic_int8"]))
    assert msg.endswith(f"variants.dynamic_int8.kind: {got} (variant kinds: {', '.join(BUILDABLE)})")


def test_a_kind_takes_only_its_own_keys(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["torch_dynamic_int8"].update(calibration="minmax_50"))
    assert msg.endswith(
        "variants.torch_dynamic_int8.calibration: unknown key (known: kind, model, max_length, truncation, streams, threads, engine, api)"
    )
    msg = error_for(tmp_path, lambda d: d["variants"]["torch_dynamic_int8"].update(engine="arm"))
    assert "variants.torch_dynamic_int8.engine" in msg and "'arm'" in msg and "qnnpack" in msg


def test_compare_references_must_be_variants(tmp_path):
    msg = error_for(tmp_path, lambda d: d["compare"].update(references=["torch_dynamic_int8", "nope"]))
    assert "compare.references: 'nope' is not one of variants" in msg and "'torch_dynamic_int8'" in msg


def test_variant_names_of_baselines_are_reserved(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"].update(onnx_fp32={"kind": "dynamic"}))
    assert msg.endswith("variants.onnx_fp32: the name is reserved (a baseline, or a key of metrics/compare.json)")


def test_static_variant_without_calibration(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"].pop("calibration"))
    assert "variants.static_int8" in msg and "calibration" in msg
    assert "[+" not in msg  # one problem, reported once


def test_static_variant_with_unknown_calibration(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"].update(calibration="nope"))
    assert "variants.static_int8.calibration: 'nope' is not one of calibrations" in msg


def test_dynamic_variant_cannot_be_qdq(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(format="QDQ"))
    assert "variants.dynamic_int8" in msg and "QOperator" in msg


def test_typo_in_a_key_is_rejected(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(per_chanel=True))
    assert msg.endswith("variants.dynamic_int8.per_chanel: unknown key (did you mean 'per_channel'?)")


def test_evaluation_dataset_must_exist(tmp_path):
    msg = error_for(tmp_path, lambda d: d["evaluate"].update(datasets=["sst2", "imdb"]))
    assert "evaluate.datasets" in msg and "imdb" in msg


def test_train_dataset_needs_a_train_split(tmp_path):
    msg = error_for(tmp_path, lambda d: d["data"].update(train_dataset="amazon"))
    assert "train_dataset" in msg and "amazon" in msg


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(QuantpipeError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [unclosed\n")
    with pytest.raises(QuantpipeError, match="not valid YAML"):
        load_params(bad)


def test_static_optimization_must_match_its_calibration(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"].update(optimization="O3"))
    assert "variants.static_int8" in msg and "calibrations.minmax_320_o2.optimization O2" in msg


def test_calibration_optimization_level_is_checked(tmp_path):
    msg = error_for(tmp_path, lambda d: d["calibrations"]["minmax_320_o2"].update(optimization="O9"))
    assert "calibrations.minmax_320_o2.optimization" in msg and "O9" in msg


def test_static_attention_needs_a_fused_graph(tmp_path):
    def mutate(d):
        d["variants"]["static_int8"].update(optimization="none", calibration="minmax_320")

    msg = error_for(tmp_path, mutate)
    assert "variants.static_int8" in msg and "Attention exists only in a fused graph" in msg


def test_unknown_extra_option(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"]["extra_options"].update(MatMulConstOnly=True))
    assert "extra_options: unknown option(s) ['MatMulConstOnly']" in msg and "MatMulConstBOnly" in msg


def test_smooth_quant_is_refused_with_the_reason(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"]["extra_options"].update(SmoothQuant=True))
    assert "SmoothQuant: not available" in msg and "neural-compressor" in msg


def test_extra_options_on_plain_dynamic_are_refused(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(extra_options={"MatMulConstBOnly": True}))
    assert "variants.dynamic_int8" in msg and "need optimization O1-O4" in msg


def test_sensitivity_references(tmp_path):
    msg = error_for(tmp_path, lambda d: d["sensitivity"].update(variant="nope"))
    assert "sensitivity.variant: 'nope'" in msg
    msg = error_for(tmp_path, lambda d: d["sensitivity"].update(dataset="imdb"))
    assert "sensitivity.dataset: 'imdb'" in msg


def test_symmetry_goes_through_the_typed_fields(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"]["extra_options"].update(ActivationSymmetric=True))
    assert "use symmetric_activations / symmetric_weights" in msg


O2 = {"kind": "dynamic", "model": "base", "optimization": "O2"}  # an optimized dynamic variant


def test_qdq_only_options_need_a_static_qdq_variant(tmp_path):
    def mutate(d):
        d["variants"]["static_int8"].update(format="QOperator")
        d["variants"]["static_int8"]["extra_options"].update(AddQDQPairToWeight=True)

    msg = error_for(tmp_path, mutate)
    assert "variants.static_int8" in msg and "['AddQDQPairToWeight'] apply to static QDQ variants only" in msg
    msg = error_for(tmp_path, lambda d: d["variants"].update(o2={**O2, "extra_options": {"DedicatedQDQPair": True}}))
    assert "variants.o2" in msg and "static QDQ variants only" in msg


def test_o4_is_refused_for_quantization(tmp_path):
    msg = error_for(tmp_path, lambda d: d["calibrations"]["minmax_320_o2"].update(optimization="O4"))
    assert "calibrations.minmax_320_o2.optimization" in msg and "O4" in msg
    msg = error_for(tmp_path, lambda d: d["variants"].update(o2={**O2, "optimization": "O4"}))
    assert "variants.o2.optimization" in msg


def test_sensitivity_needs_a_variant_whose_parts_can_be_named(tmp_path):
    msg = error_for(tmp_path, lambda d: (d["variants"].update(o2=O2), d["sensitivity"].update(variant="o2")))
    assert "sensitivity.variant: 'o2' is an optimized dynamic variant" in msg
    msg = error_for(tmp_path, lambda d: d.pop("sensitivity"))
    assert msg.endswith("sensitivity: Field required")
    msg = error_for(tmp_path, lambda d: d["sensitivity"].update(variant="torch_dynamic_int8"))
    assert "sensitivity.variant: 'torch_dynamic_int8' is a torch_dynamic variant" in msg


def test_side_by_side_needs_at_least_one_round(tmp_path):
    msg = error_for(tmp_path, lambda d: d["side_by_side"].update(rounds=0))
    assert "side_by_side.rounds" in msg
    msg = error_for(tmp_path, lambda d: d.pop("side_by_side"))  # dvc.yaml reads the section
    assert "side_by_side" in msg


def test_fp32_ops_read_fp32_only_for_static_qdq(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(fp32_ops_read_fp32=True))
    assert "fp32_ops_read_fp32: applies to static QDQ variants only" in msg
    msg = error_for(
        tmp_path,
        lambda d: d["variants"]["static_int8"].update(format="QOperator", extra_options={}, fp32_ops_read_fp32=True),
    )
    assert "fp32_ops_read_fp32: applies to static QDQ variants only" in msg


def test_seq2seq_variants_are_validated_by_their_kind(tmp_path):
    """A seq2seq variant names a kind of the one registry that serves generation; its keys are that kind's
    generate params."""
    params = load_params(REPO / "params.yaml")
    kinds = {v.kind for v in params.seq2seq.variants.values()}
    assert kinds == {"dynamic", "openvino", "pytorch"}  # no `kind`: dynamic
    msg = error_for(tmp_path, lambda d: d["seq2seq"]["variants"]["dynamic_int8"].update(kind="static"))
    assert msg.endswith(
        "seq2seq.variants.dynamic_int8.kind: 'static' does not serve generate "
        "(kinds that serve generation: pytorch, dynamic, openvino)"
    )
    msg = error_for(tmp_path, lambda d: d["seq2seq"]["variants"]["dynamic_int8"].update(kind="onnx"))
    assert msg.endswith(
        "seq2seq.variants.dynamic_int8.kind: 'onnx' is a baseline's kind (kinds that serve generation:"
        " pytorch, dynamic, openvino)"
    )
    msg = error_for(tmp_path, lambda d: d["seq2seq"]["variants"]["pytorch_bf16"].update(preset="auto"))
    assert msg.endswith("seq2seq.variants.pytorch_bf16.preset: unknown key (known: kind, threads, autocast, use_cache)")
    msg = error_for(tmp_path, lambda d: d["seq2seq"]["variants"]["openvino_default"].update(precision="fp16"))
    assert "seq2seq.variants.openvino_default.precision:" in msg and "'fp16'" in msg
    msg = error_for(tmp_path, lambda d: d["seq2seq"]["variants"]["dynamic_int8_one_thread"].update(streams=2))
    assert msg.endswith(
        "seq2seq.variants.dynamic_int8_one_thread.streams: 2 streams on 1 thread(s) (its threads, else"
        " seq2seq.evaluate.threads): each stream needs a thread of its own"
    )


def as_fields(section: dict) -> None:
    section["data"].update(pairs="fields", target_field="title")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["evaluate"].update(max_new_tokens=0), "seq2seq.evaluate.max_new_tokens: Input should be greater"),
        (
            lambda s: (s["data"].update(pairs="fields"), s["evaluate"].update(keep_source_words=False, metric="chrf")),
            "seq2seq.model.train.loss: source_words trains for decoding that keeps the source's words; set",
        ),
        (
            lambda s: (as_fields(s), s["evaluate"].update(metric="chrf")),
            (
                "seq2seq.evaluate.keep_source_words: only punctuation restoration's outputs keep their source's words;"
                " pairs is fields"
            ),
        ),
        (
            lambda s: (
                as_fields(s),
                s["evaluate"].update(keep_source_words=False),
                s["model"]["train"].update(loss="full", mark_head_weight=0),
            ),
            "seq2seq.evaluate.metric: punctuation_f1 scores restored punctuation; pairs is fields",
        ),
        (
            lambda s: (
                as_fields(s),
                s["data"].pop("target_field", None),
                s["evaluate"].update(keep_source_words=False, metric="chrf"),
                s["model"]["train"].update(loss="full", mark_head_weight=0),
            ),
            "seq2seq.data.target_field: required with pairs: fields",
        ),
        (
            lambda s: s["data"].update(train_split="train+validation"),
            "seq2seq.data.eval_split: 'validation' is also fine-tuned on (train_split: 'train+validation'); score a",
        ),
        (
            lambda s: s["data"].update(train_split="validation[:200]"),
            "seq2seq.data.eval_split: 'validation' is also fine-tuned on (train_split: 'validation[:200]')",
        ),
        (
            lambda s: s["evaluate"].update(metric="bleu"),
            "seq2seq.evaluate.metric: Input should be 'chrf', 'rouge_l' or 'punctuation_f1'",
        ),
    ],
)
def test_seq2seq_mistakes_are_one_line(tmp_path, change, expected):
    """Each cross-check of the seq2seq section, one line naming its key: the task's metric and the decoding that
    keeps the source's words belong to punctuation restoration."""
    assert expected in error_for(tmp_path, lambda d: change(d["seq2seq"]))
