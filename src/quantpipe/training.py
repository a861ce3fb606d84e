"""Training on the CPU, for the classifier (`quantpipe.base_model`) and the seq2seq model
(`quantpipe.seq2seq.training`) alike: the rows trained on, batches of similar length, the loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from quantpipe.config.sections import TrainParams


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


def train_loop(model, parameters, lengths: np.ndarray, make_batch, cfg, desc: str, loss=None) -> list[float]:
    """Train `model` on the CPU: AdamW over `parameters` (tensors, or parameter groups with their own `lr`), linear
    warm-up then decay (`cfg.warmup_ratio`), gradients clipped to norm 1, `cfg.epochs` passes over batches of
    similar length (`lengths`: one per example; `make_batch(indices)`: the model's keyword inputs, labels
    included), a progress bar named `desc`. `cfg` carries learning_rate, weight_decay, warmup_ratio, batch_size,
    epochs and seed (the batch order); `loss(model, batch)`: the loss of a batch (default: the model's own).
    Returns each step's loss; leaves the model in eval mode."""
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
                value = loss(model, make_batch(idx)) if loss else model(**make_batch(idx)).loss
                value.backward()
                torch.nn.utils.clip_grad_norm_(clipped, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(value.item())
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses
