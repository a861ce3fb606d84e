"""Generate with any seq2seq model (PyTorch or ONNX Runtime): decoded outputs with their generated token counts,
and the seconds of one call at batch size 1 (tokenization, generate and decoding), the way a service calls it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from quantpipe.inference import length_sorted_batches
from quantpipe.seq2seq.runtime import greedy_config


@dataclass
class Generated:
    texts: list[str]  # decoded, special tokens skipped, in the order of the inputs
    new_tokens: list[int]  # tokens generated per input, its end token included


def new_token_counts(sequences: np.ndarray, eos_token_id: int | list[int] | None) -> list[int]:
    """Tokens generated per row of `generate`'s output (its first column is the decoder start token): up to
    and including the first end token, else the whole row (the padding after an early end is not counted)."""
    generated = np.asarray(sequences)[:, 1:]
    ends = np.isin(generated, np.atleast_1d(eos_token_id if eos_token_id is not None else []))
    return [int(row.argmax()) + 1 if row.any() else generated.shape[1] for row in ends]


def _encode(tokenizer, texts: list[str], max_length: int | None):
    return tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt", return_token_type_ids=False
    )


def generate_texts(
    model,
    tokenizer,
    texts: list[str],
    max_new_tokens: int,
    batch_size: int,
    fixed_length: bool = False,
    max_length: int | None = None,
) -> Generated:
    """Greedy outputs for `texts`, in batches of similar source length (inputs truncated to `max_length`
    tokens, or the tokenizer's limit); see `greedy_config` for `fixed_length`."""
    import torch

    config = greedy_config(model, max_new_tokens, fixed_length)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    outputs: list[str] = [""] * len(texts)
    counts = [0] * len(texts)
    for batch in length_sorted_batches(lengths, batch_size):
        with torch.inference_mode():
            sequences = model.generate(
                **_encode(tokenizer, [texts[i] for i in batch], max_length), generation_config=config
            )
        for i, text, count in zip(
            batch,
            tokenizer.batch_decode(sequences, skip_special_tokens=True),
            new_token_counts(sequences.numpy(), config.eos_token_id),
            strict=True,
        ):
            outputs[i], counts[i] = text, count
    return Generated(outputs, counts)


def call_latencies(
    model, tokenizer, texts: list[str], max_new_tokens: int, fixed_length: bool = False, max_length: int | None = None
) -> list[float]:
    """Seconds per call, one text at a time: tokenize, generate, decode."""
    import torch

    config = greedy_config(model, max_new_tokens, fixed_length)
    seconds = []
    for text in texts:
        start = time.perf_counter()
        with torch.inference_mode():
            sequences = model.generate(**_encode(tokenizer, [text], max_length), generation_config=config)
        tokenizer.batch_decode(sequences, skip_special_tokens=True)
        seconds.append(time.perf_counter() - start)
    return seconds
