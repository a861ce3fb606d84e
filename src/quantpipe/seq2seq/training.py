"""The fp32 seq2seq model fine-tuned here: an encoder-decoder warm-started from a pretrained encoder (BERT-to-BERT
from the packaged MiniLM by default), trained on the CPU on (source, target) text pairs, saved for export."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from quantpipe.config.seq2seq import Seq2seqTrainParams
from quantpipe.errors import QuantpipeError
from quantpipe.model_loading import load_pretrained, resolve_model_ref
from quantpipe.seq2seq.source_words import SourceWords
from quantpipe.training import train_loop, training_sample

COLUMNS = ("source", "target")
# the generation tokens of a warm-started BERT-to-BERT, from its tokenizer: start from [CLS], end at [SEP]
TOKENS = {
    "decoder_start_token_id": "cls_token",
    "bos_token_id": "cls_token",
    "eos_token_id": "sep_token",
    "pad_token_id": "pad_token",
}


def warm_start(encoder_ref: str, param: str, seed: int, tie: bool = False):
    """An `EncoderDecoderModel` whose encoder and decoder both start from the encoder `encoder_ref` (`pkg:<dist>`,
    a local path or a Hub id; `param` names it in errors), with its tokenizer; `tie`: the decoder shares the
    encoder's weights. The decoder's cross-attention is new: it is initialised after seeding with `seed`, so the
    same seed gives the same weights."""
    from transformers import AutoTokenizer, EncoderDecoderModel, set_seed

    ref = resolve_model_ref(encoder_ref, param)
    tokenizer = load_pretrained(AutoTokenizer, ref, param)
    tokens = {key: getattr(tokenizer, f"{name}_id") for key, name in TOKENS.items()}
    missing = sorted({TOKENS[key] for key, value in tokens.items() if value is None})
    if missing:
        raise QuantpipeError(
            f"{param}: the tokenizer of '{encoder_ref}' has no {', '.join(missing)}; "
            "a warm start needs a BERT-like encoder ([CLS], [SEP], [PAD])"
        )
    set_seed(seed)  # the cross-attention is initialised here: seed it, or every run differs
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(ref, ref, tie_encoder_decoder=tie)
    except (OSError, ValueError) as exc:  # no weights, or no decoder (causal LM) class for the model type
        first = (str(exc).strip().splitlines() or ["cannot load"])[0]
        raise QuantpipeError(f"{param}: cannot warm-start from '{encoder_ref}': {first}") from None
    for config in (model.config, model.generation_config):  # training shifts labels with the first, generate reads
        for key, value in tokens.items():
            setattr(config, key, value)
    return model, tokenizer


def check_pairs(pairs: pd.DataFrame) -> None:
    """A frame with non-empty `source` and `target` columns, or one error line."""
    missing = [column for column in COLUMNS if column not in pairs.columns]
    if missing:
        raise QuantpipeError(
            f"pairs: no {', '.join(missing)} column (columns: {', '.join(map(str, pairs.columns)) or 'none'})"
        )
    if pairs.empty:
        raise QuantpipeError("pairs: no rows to fine-tune on")
    nulls = int(pairs[list(COLUMNS)].isna().any(axis=1).sum())
    if nulls:
        raise QuantpipeError(f"pairs: {nulls} of {len(pairs)} rows have no source or no target")


def seq2seq_batch(tokenizer, sources: list[str], targets: list[str], eos_token_id: int, cfg: Seq2seqTrainParams):
    """Encoder inputs padded to the batch's longest source; labels: each target's tokens then the end token, -100
    (no loss) after it. No start token in the labels: the model prepends its decoder start token to make the
    decoder inputs, so the decoder learns to generate the target's first token from the start token."""
    import torch

    from quantpipe.seq2seq.runtime import encode_sources

    batch = encode_sources(tokenizer, sources, cfg.max_source_length)
    ids = tokenizer(targets, add_special_tokens=False, truncation=True, max_length=cfg.max_target_length - 1)
    labels = torch.full((len(targets), 1 + max(map(len, ids["input_ids"]))), -100)
    for row, tokens in enumerate(ids["input_ids"]):
        labels[row, : len(tokens) + 1] = torch.tensor([*tokens, eos_token_id])
    batch["labels"] = labels
    return batch


def finetune_seq2seq(model, tokenizer, pairs: pd.DataFrame, cfg: Seq2seqTrainParams) -> dict:
    """Fine-tune on CPU on `pairs` (columns source, target) with `quantpipe.training.train_loop`, per-batch
    padding. Returns the loss statistics (of the loss trained, `loss`: with the mark head, its weighted term
    included) and the training time."""
    import torch
    from transformers import set_seed

    check_pairs(pairs)
    set_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    pairs = training_sample(pairs, cfg)
    sources, targets = pairs["source"].tolist(), pairs["target"].tolist()
    encoded = tokenizer(sources, truncation=True, max_length=cfg.max_source_length)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])
    eos_token_id = model.generation_config.eos_token_id

    def batch(idx: np.ndarray):
        return seq2seq_batch(tokenizer, [sources[i] for i in idx], [targets[i] for i in idx], eos_token_id, cfg)

    parameters, loss, trained = list(model.parameters()), None, cfg.loss
    if cfg.loss == "source_words":
        rule = SourceWords.of_transformers(tokenizer, [eos_token_id])
        head = None
        if cfg.mark_head_weight:
            head = torch.nn.Linear(model.config.encoder.hidden_size, 1 + len(rule.marks))
            parameters += list(head.parameters())
            trained += f" + {cfg.mark_head_weight:g} x mark head"
        loss = source_words_loss(rule, head, cfg.mark_head_weight)
    start = time.perf_counter()
    losses = train_loop(model, parameters, lengths, batch, cfg, "fine-tune seq2seq", loss)
    return {
        "train_samples": len(sources),
        "steps": len(losses),
        "loss": trained,
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-50:])),
        "seconds": time.perf_counter() - start,
    }


@contextmanager
def projection_skipped(model) -> Iterator:
    """Within: the model's `logits` are the states its output projection (the word embeddings' linear layer, the
    projection yielded) would read, not the scores of the whole vocabulary; restored after."""
    import torch

    projection = model.get_output_embeddings()
    parent, name = next(
        (module, name) for module in model.modules() for name, child in module.named_children() if child is projection
    )
    setattr(parent, name, torch.nn.Identity())
    try:
        yield projection
    finally:
        setattr(parent, name, projection)


def source_words_loss(rule: SourceWords, mark_head=None, weight: float = 0.0):
    """The loss of the choice decoding with `keep_source_words` makes (`quantpipe.seq2seq.source_words`): at each
    target position, the cross-entropy over the tokens allowed there only (the marks, and the next token of the
    target that is not a mark: the source's next token, or the end token), so that training spends itself on
    where the marks go, not on spelling the words the rule copies. Only those tokens are scored
    (`projection_skipped`): a vocabulary-wide projection at every position costs about as much as the encoder.
    With `mark_head` (a linear layer over the encoder's outputs, `1 + len(rule.marks)` classes), plus `weight` x
    its cross-entropy against `mark_labels`."""
    import torch

    marks = torch.from_numpy(rule.marks)

    def scores(states, projection, tokens):
        """The logits of `tokens` (one per position, or a list for every position) from the projection's input."""
        if tokens.dim() == 1:
            bias = projection.bias[tokens] if projection.bias is not None else None
            return torch.nn.functional.linear(states, projection.weight[tokens], bias)
        logits = (states * projection.weight[tokens]).sum(-1)
        return logits + projection.bias[tokens] if projection.bias is not None else logits

    def loss(model, batch: dict):
        labels = batch["labels"]
        valid, targets, is_mark = target_tokens(labels, marks)
        decoder = {
            "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels),
            "decoder_attention_mask": valid.long(),  # the inputs that predict a label (the rest is padding)
        }
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        with projection_skipped(model) as projection:
            out = model(**inputs, **decoder)
        states = out.logits
        # the next token that is not a mark, at or after each position (the end token ends every target)
        following = targets.clone()
        for position in range(labels.shape[1] - 2, -1, -1):
            following[:, position] = torch.where(is_mark[:, position], following[:, position + 1], targets[:, position])
        allowed = torch.cat(
            [scores(states, projection, marks), scores(states, projection, following).unsqueeze(-1)], dim=-1
        )
        value = (torch.logsumexp(allowed, dim=-1) - scores(states, projection, targets))[valid].mean()
        if mark_head is None:
            return value
        heads = mark_head(out.encoder_last_hidden_state).transpose(1, 2)  # [batch, classes, source tokens]
        wanted = mark_labels(labels, batch["input_ids"], batch["attention_mask"], marks, rule.eos)
        return value + weight * torch.nn.functional.cross_entropy(heads, wanted, ignore_index=-100)

    return loss


def target_tokens(labels, marks):
    """The labels' positions that have a token (`valid`), their tokens (0 where none) and which are marks."""
    import torch

    valid = labels != -100
    targets = labels.clamp(min=0)
    return valid, targets, torch.isin(targets, marks)


def mark_labels(labels, input_ids, attention_mask, marks, eos):
    """[batch, source tokens]: for each source token the encoder reads, the class of the mark the target puts right
    after it (0: none; `1 + i`: `marks[i]`), -100 where it is not known: [CLS], [SEP], padding, the tokens past
    where the target was cut or where it stops matching the source. The target's tokens that are neither marks
    nor its end are the source's tokens in order (a punctuation restoration pair: the source is its target
    without the marks), the k-th of them the encoder's position k + 1 (after [CLS])."""
    import torch

    valid, targets, is_mark = target_tokens(labels, marks)
    copied = valid & ~is_mark & ~torch.isin(targets, torch.as_tensor(eos))
    count = copied.sum(dim=1, keepdim=True)
    position = torch.cumsum(copied, dim=1)  # the encoder position of the token copied at each target position
    words = attention_mask.sum(dim=1, keepdim=True) - 2  # the source's own tokens, [CLS] and [SEP] aside
    inside = position <= words
    same = input_ids.gather(1, position.clamp(max=input_ids.shape[1] - 1)) == targets
    aligned = torch.cumprod((~copied | (inside & same)).long(), dim=1).bool()  # up to the first mismatch
    cut = count < words  # the target was truncated: its last word's mark is unknown
    last = position == count
    after = torch.cat([targets[:, 1:], torch.full_like(targets[:, :1], -1)], dim=1)
    mark_after = torch.cat([is_mark[:, 1:], torch.zeros_like(is_mark[:, :1])], dim=1)
    classes = torch.where(mark_after, 1 + torch.searchsorted(marks, after.clamp(min=0)), 0)
    keep = copied & aligned & ~(cut & last)
    wanted = torch.full(attention_mask.shape, -100, dtype=torch.long)
    rows = torch.arange(labels.shape[0]).unsqueeze(1).expand_as(labels)
    wanted[rows[keep], position[keep]] = classes[keep]
    return wanted


def save_seq2seq(model, tokenizer, out_dir: Path) -> Path:
    """Write the model (config.json and generation_config.json with its start, end and padding tokens, weights)
    and its tokenizer to `out_dir`; returns it."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
