"""Shared fixtures: a tiny random BERT classifier built in code (no download) and small data."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the a film movie book is was good great bad awful boring fun love hate not very it this and "
         "but story acting plot works broke product kitchen . , ! ?").split()


def build_tiny_model(out: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A 2-layer BERT with hidden size 32 and a word-level vocabulary, saved as a HF model directory."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in WORDS)]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), model_max_length=128).save_pretrained(out)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    from quantpipe.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "onnx"
    out.mkdir()
    export_onnx(tiny_model, out)
    return out


@pytest.fixture(scope="session")
def texts() -> pd.DataFrame:
    """Forty labelled sentences from the shipped SST-2 validation copy."""
    frame = pd.read_csv(REPO / "data/offline/sst2/validation.tsv", sep="\t", quoting=3).head(40)
    return frame.rename(columns={"sentence": "text"})
