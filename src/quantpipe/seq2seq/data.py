"""The text-to-text pairs of one dataset of `data.datasets`, loaded like every split: two of its columns, or a
column's texts with their punctuation removed and restored."""

from __future__ import annotations

import re

import pandas as pd

from quantpipe.config import Params
from quantpipe.data import load_split
from quantpipe.errors import QuantpipeError


def text_pairs(params: Params, role: str) -> pd.DataFrame:
    """`source`, `target` of the train or eval split (`pairs: punctuation`, `train_words: all`: a train pair per
    window of `max_words` words); rows with a blank source or target are dropped. The eval
    pairs are a seeded sample of `eval_samples` rows (a split's first rows may all come from one product domain),
    in the sample's order."""
    cfg = params.seq2seq.data
    spec = params.data.datasets[cfg.dataset]
    split = cfg.train_split if role == "train" else cfg.eval_split
    frame = load_split(cfg.dataset, spec, split)
    keys = ("source_field", "target_field") if cfg.pairs == "fields" else ("source_field",)
    for key in keys:
        column = getattr(cfg, key)
        if column not in frame.columns:
            raise QuantpipeError(
                f"seq2seq.data.{key}: '{column}' is not a column of {cfg.dataset} (columns: {list(frame.columns)})"
            )
    if cfg.pairs == "fields":
        pairs = pd.DataFrame({"source": frame[cfg.source_field], "target": frame[cfg.target_field]}).astype(str)
    else:
        texts = frame[cfg.source_field].astype(str)
        if role == "train" and cfg.train_words == "all":
            targets = [window.lower() for text in texts for window in word_windows(text, cfg.max_words)]
        else:
            targets = [first_words(text, cfg.max_words).lower() for text in texts]
        pairs = pd.DataFrame({"source": [without_punctuation(text) for text in targets], "target": targets})
    pairs = pairs[(pairs["source"].str.strip() != "") & (pairs["target"].str.strip() != "")].reset_index(drop=True)
    if pairs.empty:
        raise QuantpipeError(f"seq2seq.data: no non-blank pair of {cfg.source_field} in '{split}' (pairs: {cfg.pairs})")
    if cfg.pairs == "punctuation" and (pairs["source"] == pairs["target"]).all():
        raise QuantpipeError(
            f"seq2seq.data.source_field: '{cfg.source_field}' of {cfg.dataset} ('{split}') has no punctuation in its"
            f" first {cfg.max_words} words: pairs: punctuation has nothing to restore"
        )
    if role == "eval" and cfg.eval_samples and cfg.eval_samples < len(pairs):
        pairs = pairs.sample(n=cfg.eval_samples, random_state=cfg.seed).reset_index(drop=True)
    return pairs


def first_words(text: str, count: int) -> str:
    """The first `count` whitespace-separated words of `text`, joined by single spaces."""
    return " ".join(text.split()[:count])


def word_windows(text: str, count: int) -> list[str]:
    """`text` cut into consecutive runs of `count` whitespace-separated words (the last may be shorter), each
    joined by single spaces."""
    words = text.split()
    return [" ".join(words[start : start + count]) for start in range(0, len(words), count)]


def without_punctuation(text: str) -> str:
    """`text` with every character that is neither a word character, a space nor an apostrophe removed (a run
    of them becomes one space), spaces collapsed: what punctuation restoration starts from."""
    return " ".join(re.sub(r"[^\w\s']+", " ", text).split())
