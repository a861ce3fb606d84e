"""Students and length policies: a student cut from a tiny teacher has the declared layers, FFN width and heads and
keeps the teacher's weights; distillation lowers its loss; it is exported, quantized and served by every kind; a
`head_tail` cut keeps a text's first and last tokens; bad student and length params are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, build_tiny_model
from test_kinds import BUILDABLE, VARIANTS, build, cfg, raw_params, sentences, two_class  # noqa: F401 - fixtures

from quantpipe.config import Params, parse_params
from quantpipe.config.registry import get_kind
from quantpipe.config.sections import LengthPolicy
from quantpipe.config.students import DistillationParams, StudentParams
from quantpipe.distillation import (
    LOGITS_FILE,
    build_student,
    distil,
    distillation_loss,
    load_classifier,
    make_student,
    teacher_logits,
)
from quantpipe.errors import QuantpipeError
from quantpipe.export import export_onnx
from quantpipe.inference import Tokenizer, head_tail, predict
from quantpipe.kinds import build_inputs, model_dirs
from quantpipe.kinds.base import BuildInputs

TEXTS = ["the film was good", "a bad movie", "i love this book", "boring and awful", "great fun", "it broke"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny 3-layer teacher (hidden 32, FFN 64, 2 heads)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    out = build_tiny_model(tmp_path_factory.mktemp("teacher") / "base")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    config = model.config
    config.num_hidden_layers = 3
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(config).eval().save_pretrained(out)
    return out


def student_cfg(**update) -> StudentParams:
    return StudentParams(**{"layers": [0, 2], "epochs": 1, "batch_size": 2, "threads": 1, **update})


def test_a_student_has_the_declared_shape_and_the_teachers_weights(teacher, tmp_path):
    import torch

    model, _ = load_classifier(teacher)
    student = make_student(model, student_cfg(ffn=48, heads=1))
    assert student.config.num_hidden_layers == 2 and student.config.intermediate_size == 48
    layers = student.base_model.encoder.layer
    assert layers[0].intermediate.dense.out_features == 48 and layers[1].output.dense.in_features == 48
    assert all(layer.attention.self.num_attention_heads == 1 for layer in layers)
    # layer 1 of the student is layer 2 of the teacher: its LayerNorm (never cut) is the teacher's
    teacher_ln = model.base_model.encoder.layer[2].output.LayerNorm.weight
    assert torch.equal(layers[1].output.LayerNorm.weight, teacher_ln)
    assert torch.equal(
        student.base_model.embeddings.word_embeddings.weight, model.base_model.embeddings.word_embeddings.weight
    )
    # the kept FFN neurons are the teacher's rows, in their order
    kept = layers[0].intermediate.dense.weight
    teacher_rows = model.base_model.encoder.layer[0].intermediate.dense.weight
    assert all(any(torch.equal(row, t) for t in teacher_rows) for row in kept)
    # saved and reloaded, the student computes the same logits
    student.save_pretrained(tmp_path / "s")
    reloaded, _ = load_classifier_with(tmp_path / "s", teacher)
    batch = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        assert torch.allclose(student(**batch).logits, reloaded(**batch).logits, atol=1e-6)
    # the teacher is left whole
    assert model.config.num_hidden_layers == 3 and len(model.base_model.encoder.layer) == 3


def load_classifier_with(model_dir: Path, tokenizer_dir: Path):
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(model_dir)
    return load_classifier(model_dir)


def test_the_distillation_loss_is_zero_for_the_teachers_logits_and_labels_that_agree():
    import torch

    logits = torch.tensor([[3.0, -3.0], [-2.0, 2.0]])
    assert distillation_loss(logits, logits, torch.tensor([0, 1]), 2.0, 1.0).item() == pytest.approx(0, abs=1e-6)
    other = torch.tensor([[-3.0, 3.0], [2.0, -2.0]])
    assert distillation_loss(other, logits, torch.tensor([0, 1]), 2.0, 1.0).item() > 1


def test_distillation_lowers_the_loss_and_saves_a_loadable_student(two_class, tmp_path):  # noqa: F811
    import torch
    from test_base_model import toy_set

    teacher = two_class["base"]  # 2 layers, fine-tuned on the toy set: its logits and the labels agree
    rows = toy_set()
    table = teacher_logits(teacher, rows, DistillationParams(max_length=16, batch_size=4, threads=1))
    assert list(table.columns) == ["text", "label", "logit_0", "logit_1"] and len(table) == len(rows)
    assert table["text"].tolist() == rows["text"].tolist()  # in the rows' order
    assert (table[["logit_0", "logit_1"]].to_numpy().argmax(axis=1) == rows["label"].to_numpy()).all()
    model, tokenizer = load_classifier(teacher)
    cfg_ = student_cfg(layers=[0], epochs=30, learning_rate=3e-3, freeze_embeddings=False, alpha=0.9)
    student = make_student(model, cfg_)
    torch.nn.init.zeros_(student.classifier.weight)  # a head that knows nothing: the loss has room to fall
    summary = distil(student, tokenizer, table, table[["logit_0", "logit_1"]].to_numpy(np.float32), cfg_, 16)
    assert summary["steps"] == 30 * 6  # 12 texts in batches of 2
    assert summary["final_loss"] < summary["first_loss"] / 4
    table.to_parquet(tmp_path / LOGITS_FILE, index=False)
    summary = build_student("s", teacher, tmp_path / LOGITS_FILE, student_cfg(layers=[1]), 16, tmp_path / "s")
    assert summary["layers"] == [1] and summary["steps"] == 6
    reloaded, _ = load_classifier(tmp_path / "s")
    assert reloaded.config.num_hidden_layers == 1


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"layers": [0, 3]}, "students.s.layers: [0, 3] is not a subset of the teacher's 3 layers (0..2)"),
        ({"layers": [0, 1, 2, 3]}, "students.s.layers: [0, 1, 2, 3] is not a subset"),
        ({"ffn": 65}, "students.s.ffn: 65 is wider than the teacher's FFN (64)"),
        ({"heads": 3}, "students.s.heads: 3 is more than the teacher's 2 heads"),
    ],
)
def test_a_student_the_teacher_cannot_give_is_one_line_and_nothing_is_written(teacher, tmp_path, update, message):
    rows = pd.DataFrame({"text": TEXTS, "label": [1, 0, 1, 0, 1, 0]})
    table = teacher_logits(teacher, rows, DistillationParams(max_length=16, batch_size=4, threads=1))
    table.to_parquet(tmp_path / LOGITS_FILE, index=False)
    with pytest.raises(
        QuantpipeError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        build_student("s", teacher, tmp_path / LOGITS_FILE, student_cfg(**update), 16, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def student_dirs(two_class, tmp_path_factory) -> dict:  # noqa: F811
    """`two_class` with a one-layer student of its base model (distilled on the toy set) beside it, in the
    pipeline's layout: pytorch/<model>, onnx/<model>."""
    import shutil

    root = tmp_path_factory.mktemp("sources")
    for kind in ("pytorch", "onnx"):
        (root / kind).mkdir()
    shutil.copytree(two_class["base"], root / "pytorch" / "base")
    shutil.copytree(two_class["onnx"], root / "onnx" / "base")
    rows = pd.read_parquet(two_class["prepared"] / "sst2" / "train.parquet")
    table = teacher_logits(root / "pytorch" / "base", rows, DistillationParams(max_length=16, batch_size=8, threads=1))
    table.to_parquet(root / LOGITS_FILE, index=False)
    cfg_ = student_cfg(layers=[1], epochs=20, learning_rate=3e-3, freeze_embeddings=False, batch_size=4)
    build_student("tiny", root / "pytorch" / "base", root / LOGITS_FILE, cfg_, 16, root / "pytorch" / "tiny")
    (root / "onnx" / "tiny").mkdir()
    export_onnx(root / "pytorch" / "tiny", root / "onnx" / "tiny")
    return {**two_class, "base": root / "pytorch" / "base", "onnx": root / "onnx" / "base"}


def test_model_dirs_are_the_base_models_or_a_students_beside_them(tmp_path):
    assert model_dirs("base", tmp_path / "b", tmp_path / "o") == (tmp_path / "b", tmp_path / "o")
    got = model_dirs("s4", tmp_path / "pytorch" / "base", tmp_path / "onnx" / "base")
    assert got == (tmp_path / "pytorch" / "s4", tmp_path / "onnx" / "s4")


@pytest.mark.parametrize("kind_name", BUILDABLE)
def test_each_kind_builds_a_variant_of_a_student(kind_name, student_dirs, sentences, tmp_path):  # noqa: F811
    raw = raw_params({"sens": {"kind": "dynamic"}, kind_name: {**VARIANTS[kind_name], "model": "tiny"}})
    raw["students"] = {"tiny": {"layers": [1]}}
    params = Params.model_validate(raw)
    variant = params.variants[kind_name]
    kind = get_kind(kind_name)
    dirs = BuildInputs(
        params, student_dirs["base"], student_dirs["onnx"], student_dirs["calibration"], student_dirs["prepared"]
    )
    inputs = build_inputs(params, kind, variant, dirs, tmp_path / "scratch")
    assert inputs.base == student_dirs["base"].parent / "tiny" and inputs.onnx == student_dirs["onnx"].parent / "tiny"
    if kind.calibrated:  # ranges of the student's own graph, not the base model's
        assert inputs.calibration == tmp_path / "scratch" and (tmp_path / "scratch" / "mm" / "ranges.json").is_file()
    out = build(
        kind_name,
        variant,
        params,
        {**student_dirs, "base": inputs.base, "onnx": inputs.onnx, "calibration": inputs.calibration},
        tmp_path / "q",
    )
    classifier = kind.load(out, variant, cfg())
    student = get_kind("pytorch").load(inputs.base, get_kind("pytorch").params(kind="pytorch"), cfg())
    texts = sentences["text"].tolist()
    got = predict(classifier, Tokenizer(out), texts, 8, 64).labels
    expected = predict(student, Tokenizer(inputs.base), texts, 8, 64).labels
    assert float((got == expected).mean()) >= 0.8, f"{kind_name}: agrees with the student on too few texts"
    if kind_name == "pytorch":  # the fp32 copy of the student: the student's own weights
        from transformers import AutoConfig

        assert AutoConfig.from_pretrained(out).num_hidden_layers == 1


def test_head_tail_keeps_the_first_and_last_tokens(tiny_model):
    tokenizer = Tokenizer(tiny_model)
    words = " ".join(["good"] * 10 + ["bad"] * 10 + ["fun"] * 10)
    full = tokenizer.encode([words], 64)[0]["input_ids"]
    cut = tokenizer.encode([words], LengthPolicy(12, "head_tail"))[0]
    ids = cut["input_ids"]
    assert len(ids) == 12 and cut["attention_mask"] == [1] * 12 and len(cut["token_type_ids"]) == 12
    assert ids[0] == full[0] and ids[-1] == full[-1]  # [CLS] and [SEP] kept
    assert ids[1:6] == full[1:6] and ids[6:11] == full[-6:-1]  # 5 of the head, 5 of the tail
    head = tokenizer.encode([words], LengthPolicy(12, "head"))[0]["input_ids"]
    assert head == full[:11] + full[-1:]
    short = tokenizer.encode(["good fun"], LengthPolicy(12, "head_tail"))[0]["input_ids"]
    assert short == tokenizer.encode(["good fun"], 12)[0]["input_ids"]  # nothing to cut: untouched
    assert list(head_tail([1, 0, 0, 0, 0, 0, 1], 5)) == [0, 1, 2, 5, 6]  # an odd budget: the head gets more


def test_a_variants_length_policy_is_its_own_or_the_evaluate_sections():
    params = Params.model_validate(
        raw_params(
            {"d": {"kind": "dynamic"}, "pytorch": {"kind": "pytorch", "max_length": 8, "truncation": "head_tail"}}
        )
    )
    variant = params.variants["pytorch"]
    assert (
        variant.length_policy(cfg()) == LengthPolicy(8, "head_tail")
        and str(variant.length_policy(cfg())) == "8 head+tail"
    )
    assert params.variants["pytorch"].model == "base"
    default = Params.model_validate(raw_params({"d": {"kind": "dynamic"}, "pytorch": {"kind": "pytorch"}})).variants[
        "pytorch"
    ]
    assert default.length_policy(cfg()) == LengthPolicy(64, "head")


def shipped(**changes) -> str:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = raw
        for part in parents:
            node = node[part]
        node[key] = value
    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"variants__dynamic_int8__model": "nope"},
            "variants.dynamic_int8.model: 'nope' is neither base nor a student",
        ),
        (
            {"variants__dynamic_int8__max_length": 4},
            "variants.dynamic_int8.max_length: Input should be greater than or equal to 8",
        ),
        (
            {"variants__dynamic_int8__truncation": "middle"},
            "variants.dynamic_int8.truncation: Input should be 'head' or 'head_tail'",
        ),
        ({"evaluate__max_length": 7}, "evaluate.max_length: Input should be greater than or equal to 8"),
        (
            {"students__minilm_ffn768__layers": [2, 1]},
            "students.minilm_ffn768.layers: each layer once, in increasing order",
        ),
        ({"students__minilm_ffn768__layers": []}, "students.minilm_ffn768.layers: List should have at least 1 item"),
        ({"students__minilm_ffn768__ffn": 0}, "students.minilm_ffn768.ffn: Input should be greater than 0"),
        ({"students__base": {"layers": [0]}}, "students: 'base' is the fine-tuned model's name"),
        (
            {"sensitivity__variant": "minilm_ffn768_openvino_int8_ht128"},
            "sensitivity.variant: 'minilm_ffn768_openvino_int8_ht128'",
        ),
        (
            {"variants__static_naive__max_length": 128},
            "sensitivity.variant: 'static_naive' is built from 'base' reading 128 head",
        ),
        (
            {"search__base": {"kind": "dynamic", "model": "nope"}},
            "search.base.model: 'nope' is neither base nor a student",
        ),
    ],
)
def test_bad_student_and_length_params_are_one_line(changes, message):
    with pytest.raises(QuantpipeError) as err:
        parse_params(shipped(**changes))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_max_length_above_the_models_position_limit_is_one_line(tiny_model):
    from quantpipe.inference import check_max_length

    with pytest.raises(QuantpipeError, match=r"variants.v.max_length: 512 exceeds the model's position limit 128"):
        check_max_length(tiny_model, 512, "variants.v.max_length")


def test_the_shipped_variants_name_their_model(tmp_path):
    """dvc.yaml's quantize stage depends on `models/pytorch/${item.model}`: every shipped variant states it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert all("model" in variant for variant in raw["variants"].values())
    assert np.all([v["model"] in ("base", *raw["students"]) for v in raw["variants"].values()])


def test_agreement_at_length_is_against_the_baseline_reading_as_the_model_does(tmp_path):
    from quantpipe.analysis import teachers_by_length, with_agreement
    from quantpipe.io import write_json

    raw = raw_params(
        {
            "d": {"kind": "dynamic"},
            "fp32_128": {"kind": "pytorch", "max_length": 128, "truncation": "head_tail"},
            "bf16_128": {"kind": "pytorch", "autocast": "bf16", "max_length": 128, "truncation": "head_tail"},
            "int8_128": {"kind": "dynamic", "max_length": 128, "truncation": "head_tail", "streams": 2},
        }
    )
    params = Params.model_validate(raw)
    baseline = get_kind("pytorch").params(kind="pytorch")
    teachers = teachers_by_length(params.variants, "pytorch_fp32", baseline, LengthPolicy(256))
    # bf16 is not the baseline's params: only the fp32 copy at 128 head+tail is its teacher at that length
    assert teachers == {(256, "head"): "pytorch_fp32", (128, "head_tail"): "fp32_128"}
    labels = {"pytorch_fp32": [0, 0, 1, 1], "fp32_128": [0, 1, 1, 1], "int8_128": [0, 1, 1, 0], "d": [0, 0, 1, 0]}
    for name, predicted in labels.items():
        write_json(tmp_path / name / "sst2.json", {"labels": predicted})
    lengths = {"pytorch_fp32": 256, "d": 256, "fp32_128": 128, "int8_128": 128}
    table = pd.DataFrame(
        [
            {
                "dataset": "sst2",
                "variant": name,
                "n": 4,
                "max_length": length,
                "truncation": "head" if length == 256 else "head_tail",
            }
            for name, length in lengths.items()
        ]
    )
    out = with_agreement(table, tmp_path, "pytorch_fp32", 0, 0, teachers).set_index("variant")
    assert out.loc["int8_128", "agreement"] == 0.5 and out.loc["int8_128", "agreement_at_length"] == 0.75
    assert out.loc["d", "agreement_at_length"] == out.loc["d", "agreement"] == 0.75
    assert out.loc["fp32_128", "agreement_at_length"] == 1.0


def test_a_search_axis_naming_an_unknown_model_is_one_line():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["search"]["space"][-1]["model"] = ["base", "minilm_l9"]
    with pytest.raises(QuantpipeError) as err:
        parse_params(yaml.safe_dump(raw))
    assert "search.space.model: 'minilm_l9' is neither base nor a student ['minilm_ffn768']" in str(err.value)


def test_a_promoted_winner_names_its_model():
    from quantpipe.search.promote import declared_keys

    assert declared_keys({"kind": "dynamic", "per_channel": True}) == {
        "kind": "dynamic",
        "model": "base",
        "per_channel": True,
    }
    student = {"kind": "openvino", "model": "minilm_ffn768", "calibration": "minmax_320", "streams": 2}
    assert declared_keys(student) == student
