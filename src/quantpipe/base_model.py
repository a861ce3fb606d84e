"""The fp32 classifier everything starts from: a pretrained sequence classifier, or an encoder fine-tuned here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from quantpipe.config.sections import BaseModelParams, TrainParams
from quantpipe.errors import QuantpipeError
from quantpipe.model_loading import check_not_seq2seq, load_pretrained, resolve_model_ref
from quantpipe.training import train_loop, training_sample


def build_base_model(params: BaseModelParams, train: pd.DataFrame | None, out_dir: Path) -> dict:
    """Write the fp32 classifier and its tokenizer to `out_dir`; return a summary for the logs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    labels = dict(enumerate(params.labels))
    label_kwargs = {"num_labels": len(labels), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    if params.source == "pretrained":
        ref = resolve_model_ref(params.pretrained, "base_model.pretrained")
        check_not_seq2seq(ref, "base_model.pretrained")
        tokenizer = load_pretrained(AutoTokenizer, ref, "base_model.pretrained")
        model = load_pretrained(AutoModelForSequenceClassification, ref, "base_model.pretrained")
        summary = {"source": "pretrained", "model": params.pretrained}
    else:
        if train is None or train.empty:
            raise QuantpipeError("base_model: fine-tuning needs a non-empty train split")
        ref = resolve_model_ref(params.encoder, "base_model.encoder")
        check_not_seq2seq(ref, "base_model.encoder")
        tokenizer = load_pretrained(AutoTokenizer, ref, "base_model.encoder")
        set_seed(params.train.seed)  # the classifier head is initialised here: seed it, or every run differs
        model = load_pretrained(AutoModelForSequenceClassification, ref, "base_model.encoder", **label_kwargs)
        summary = {"source": "finetune", "encoder": params.encoder, **finetune(model, tokenizer, train, params.train)}
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return summary


def finetune(model, tokenizer, train: pd.DataFrame, cfg: TrainParams) -> dict:
    """Fine-tune on CPU (`train_loop`), per-batch padding. Returns loss statistics."""
    import torch
    from transformers import set_seed

    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    train = training_sample(train, cfg)
    texts, labels = train["text"].tolist(), train["label"].to_numpy()
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]])

    def batch(idx: np.ndarray) -> dict:
        texts_in = [texts[i] for i in idx]
        encoded = tokenizer(texts_in, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        return {**encoded, "labels": torch.as_tensor(labels[idx])}

    losses = train_loop(model, trainable, lengths, batch, cfg, "fine-tune")
    return {
        "train_samples": len(texts),
        "steps": len(losses),
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-50:])),
    }
