"""Loading dataset splits (Hub or offline copies, one code path) and combining text fields."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantpipe.errors import QuantpipeError
from quantpipe.params import DatasetParams

TERMINAL_PUNCTUATION = (".", "!", "?")


def load_split(name: str, spec: DatasetParams, split: str) -> pd.DataFrame:
    """Load one split with `datasets.load_dataset`; `split` may slice (`test[:3000]`)."""
    import datasets

    if spec.data_files:
        for key, file in spec.data_files.items():
            if not Path(file).is_file():
                raise QuantpipeError(f"data.datasets.{name}.data_files.{key}: file not found: {file}")
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(spec.path, spec.name, data_files=spec.data_files, split=split, **spec.load_kwargs)
    except Exception as exc:  # datasets raises many types; the user needs the first line only
        if isinstance(exc, StopIteration) or "corresponds to no data" in str(exc):
            raise QuantpipeError(f"data.datasets.{name}: split '{split}' is empty") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuantpipeError(f"data.datasets.{name}: cannot load split '{split}' of '{spec.path}': {first}") from None
    frame = ds.to_pandas()
    if frame.empty:
        raise QuantpipeError(f"data.datasets.{name}: split '{split}' is empty")
    return frame


def join_fields(parts: list[object]) -> str:
    """Join text fields into one: every non-empty part but the last ends with `.`, `!` or `?`
    (a period is added otherwise), parts separated by one space. Missing or blank parts are skipped."""
    texts = [str(p).strip() for p in parts if p is not None and not (isinstance(p, float) and pd.isna(p))]
    texts = [t for t in texts if t]
    head = [t if t.endswith(TERMINAL_PUNCTUATION) else t + "." for t in texts[:-1]]
    return " ".join(head + texts[-1:])


def combine(frame: pd.DataFrame, spec: DatasetParams, name: str, num_labels: int) -> pd.DataFrame:
    """Return a frame with a single `text` column and an integer `label` column."""
    needed = [*spec.text_fields, spec.label_field]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        raise QuantpipeError(
            f"data.datasets.{name}: column(s) {missing} not in the data (columns: {list(frame.columns)})"
        )
    if frame.empty:
        raise QuantpipeError(f"data.datasets.{name}: no rows")
    texts = [join_fields(list(row)) for row in frame[spec.text_fields].itertuples(index=False, name=None)]
    labels = frame[spec.label_field]
    if spec.label_map:
        mapped = labels.astype(str).map(spec.label_map)
        unknown = sorted(set(labels[mapped.isna()].astype(str)))
        if unknown:
            raise QuantpipeError(f"data.datasets.{name}.label_map: no mapping for label(s) {unknown[:5]}")
        labels = mapped
    labels = pd.to_numeric(labels, errors="coerce")
    bad = labels.isna() | ~labels.isin(range(num_labels))
    if bad.any():
        raise QuantpipeError(
            f"data.datasets.{name}.{spec.label_field}: labels must be 0..{num_labels - 1} "
            f"(or set label_map); got {frame[spec.label_field][bad].iloc[0]!r}"
        )
    out = pd.DataFrame({"text": texts, "label": labels.astype("int64")})
    if (out["text"] == "").all():
        raise QuantpipeError(f"data.datasets.{name}: every text is empty after combining {spec.text_fields}")
    return out


def raw_path(root: str | Path, dataset: str, role: str) -> Path:
    return Path(root) / dataset / f"{role}.parquet"


def read_prepared(root: str | Path, dataset: str, role: str) -> pd.DataFrame:
    path = raw_path(root, dataset, role)
    if not path.is_file():
        raise QuantpipeError(f"{path}: prepared split not found (run the combine stage)")
    return pd.read_parquet(path)
