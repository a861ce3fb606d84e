"""The data trials are scored on: each selection dataset's `selection_split`, minus every text the fine-tune,
the calibrations or the report's evaluation use, so choosing a winner never looks at the report's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quantpipe.calibration import calibration_sample
from quantpipe.config import Params
from quantpipe.data import read_prepared
from quantpipe.errors import QuantpipeError
from quantpipe.training import training_sample


def used_texts(params: Params, prepared: Path) -> set[str]:
    """Texts the pipeline already used: the fine-tune's sample, every calibration sample, the evaluated splits."""
    train = read_prepared(prepared, params.data.train_dataset, "train")
    used = set(training_sample(train, params.base_model.train)["text"])
    for cfg in params.calibrations.values():
        used.update(calibration_sample(train["text"], cfg))
    for name in params.evaluate.datasets:
        used.update(read_prepared(prepared, name, "eval")["text"])
    return used


def selection_data(params: Params, prepared: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Dataset -> (texts, labels): a seeded sample of `selection.max_samples` held-out rows of each dataset."""
    sel = params.search.selection
    used = used_texts(params, prepared)
    out = {}
    for name in sel.datasets:
        frame = read_prepared(prepared, name, "selection")
        frame = frame[~frame["text"].isin(used)]
        if frame.empty:
            raise QuantpipeError(f"search.selection.datasets: '{name}' has no held-out row left in its selection_split")
        if sel.max_samples and sel.max_samples < len(frame):
            frame = frame.sample(n=sel.max_samples, random_state=sel.seed)
        out[name] = (frame["text"].tolist(), frame["label"].to_numpy())
    return out
