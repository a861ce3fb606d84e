"""Generate with any served seq2seq model (`quantpipe.seq2seq.runtime.TorchSeq2seq` or
`quantpipe.seq2seq.lean.LeanSeq2seq`): decoded outputs with their generated token counts, and the seconds of one
call at batch size 1 (tokenization, generation and decoding), the way a service calls it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from quantpipe.inference import length_sorted_batches


@dataclass
class Generated:
    texts: list[str]  # decoded, special tokens skipped, in the order of the inputs
    new_tokens: list[int]  # tokens generated per input, its end token included


def new_token_counts(sequences: np.ndarray, eos_token_id: int | list[int] | None) -> list[int]:
    """Tokens generated per row of a generated sequence array (its first column is the decoder start token): up
    to and including the first end token, else the whole row (the padding after an early end is not counted)."""
    generated = np.asarray(sequences)[:, 1:]
    ends = np.isin(generated, np.atleast_1d(eos_token_id if eos_token_id is not None else []))
    return [int(row.argmax()) + 1 if row.any() else generated.shape[1] for row in ends]


def generate_texts(
    model, texts: list[str], max_new_tokens: int, batch_size: int, fixed_length: bool = False
) -> Generated:
    """Greedy outputs for `texts`, in batches of similar source length (as many at once as the model has streams);
    `fixed_length`: exactly `max_new_tokens` tokens each (the end token held back), else each stops at its end
    token."""
    outputs: list[str] = [""] * len(texts)
    counts = [0] * len(texts)
    batches = length_sorted_batches(model.lengths(texts), batch_size)
    results = model.generate_batches([[texts[i] for i in batch] for batch in batches], max_new_tokens, fixed_length)
    for batch, (decoded, sequences) in zip(batches, results, strict=True):
        for i, text, count in zip(batch, decoded, new_token_counts(sequences, model.eos), strict=True):
            outputs[i], counts[i] = text, count
    return Generated(outputs, counts)


def call_latencies(model, texts: list[str], max_new_tokens: int, fixed_length: bool = False) -> list[float]:
    """Seconds per call, one text at a time: tokenize, generate, decode."""
    seconds = []
    for text in texts:
        start = time.perf_counter()
        model.generate([text], max_new_tokens, fixed_length)
        seconds.append(time.perf_counter() - start)
    return seconds
