"""The fine-tune: it learns, and the same params give the same weights (the classifier head is seeded too)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import build_tiny_t5

from quantpipe.base_model import build_base_model
from quantpipe.config.sections import BaseModelParams, TrainParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict
from quantpipe.kinds.pytorch import TorchClassifier

POSITIVE = ["good great fun", "love it", "great fun film", "very good", "fun and great", "love this"]
NEGATIVE = ["bad awful boring", "hate it", "awful boring plot", "very bad", "boring and bad", "hate this"]


def toy_set() -> pd.DataFrame:
    """Separable by vocabulary: positive words only in label 1, negative words only in label 0."""
    return pd.DataFrame({"text": POSITIVE + NEGATIVE, "label": [1] * len(POSITIVE) + [0] * len(NEGATIVE)})


def encoder_only(tiny_model, out):
    """The tiny BERT without its classification head, as a pretrained encoder is shipped."""
    from transformers import AutoTokenizer, BertModel

    BertModel.from_pretrained(tiny_model).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def accuracy(model_dir, frame: pd.DataFrame) -> float:
    run = predict(
        TorchClassifier(model_dir, threads=1),
        Tokenizer(model_dir),
        frame["text"].tolist(),
        batch_size=4,
        length=16,
    )
    return float((run.labels == frame["label"].to_numpy()).mean())


def params(**train) -> BaseModelParams:
    return BaseModelParams(
        source="finetune",
        encoder="",
        train=TrainParams(
            **{"epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "max_length": 16, "threads": 1, **train}
        ),
    )


def test_finetune_learns_a_separable_toy_set_and_saves(tiny_model, tmp_path):
    encoder = encoder_only(tiny_model, tmp_path / "encoder")
    cfg = params().model_copy(update={"encoder": str(encoder)})
    summary = build_base_model(cfg, toy_set(), tmp_path / "out")
    assert summary["steps"] == 150 and summary["train_samples"] == 12
    assert summary["final_loss"] < summary["first_loss"] / 2
    assert accuracy(tmp_path / "out", toy_set()) == 1.0
    assert TorchClassifier(tmp_path / "out", threads=1).model.config.id2label == {0: "negative", 1: "positive"}


def test_same_params_give_identical_weights(tiny_model, tmp_path):
    encoder = encoder_only(tiny_model, tmp_path / "encoder")
    cfg = params(epochs=2).model_copy(update={"encoder": str(encoder)})
    for run in ("a", "b"):
        build_base_model(cfg, toy_set(), tmp_path / run)
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    other_seed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 7})})
    build_base_model(other_seed, toy_set(), tmp_path / "c")
    assert (tmp_path / "c/model.safetensors").read_bytes() != (tmp_path / "a/model.safetensors").read_bytes()


def test_a_seq2seq_model_is_refused_in_one_line(tmp_path):
    """T5 has a sequence-classification class in transformers, but a T5 checkpoint is a text-to-text model: it
    belongs to the seq2seq pipeline."""
    t5 = build_tiny_t5(tmp_path / "t5")
    for key, cfg in (
        ("base_model.pretrained", BaseModelParams(source="pretrained", pretrained=str(t5))),
        ("base_model.encoder", params().model_copy(update={"encoder": str(t5)})),
    ):
        with pytest.raises(
            QuantpipeError, match=rf"^{key}: '{t5}' is a seq2seq model \(t5, T5ForConditionalGeneration\)"
        ):
            build_base_model(cfg, toy_set(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
