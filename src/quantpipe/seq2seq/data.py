"""The text-to-text pairs: two columns of one dataset of `data.datasets`, loaded like every split."""

from __future__ import annotations

import pandas as pd

from quantpipe.config import Params
from quantpipe.data import load_split
from quantpipe.errors import QuantpipeError


def text_pairs(params: Params, role: str) -> pd.DataFrame:
    """`source`, `target` of the train or eval split; rows with a blank source or target are dropped. The eval
    pairs are a seeded sample of `eval_samples` rows (a split's first rows may all come from one product domain),
    in the sample's order."""
    cfg = params.seq2seq.data
    spec = params.data.datasets[cfg.dataset]
    split = cfg.train_split if role == "train" else cfg.eval_split
    frame = load_split(cfg.dataset, spec, split)
    for key in ("source_field", "target_field"):
        column = getattr(cfg, key)
        if column not in frame.columns:
            raise QuantpipeError(
                f"seq2seq.data.{key}: '{column}' is not a column of {cfg.dataset} (columns: {list(frame.columns)})"
            )
    pairs = pd.DataFrame({"source": frame[cfg.source_field], "target": frame[cfg.target_field]}).astype(str)
    pairs = pairs[(pairs["source"].str.strip() != "") & (pairs["target"].str.strip() != "")].reset_index(drop=True)
    if pairs.empty:
        raise QuantpipeError(f"seq2seq.data: no non-blank ({cfg.source_field}, {cfg.target_field}) pair in '{split}'")
    if role == "eval" and cfg.eval_samples and cfg.eval_samples < len(pairs):
        pairs = pairs.sample(n=cfg.eval_samples, random_state=cfg.seed).reset_index(drop=True)
    return pairs
