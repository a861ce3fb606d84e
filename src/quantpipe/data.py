"""Loading dataset splits (Hub or offline copies, one code path) and combining text fields."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from quantpipe.config.sections import DatasetParams
from quantpipe.errors import QuantpipeError
from quantpipe.io import read_parquet

TERMINAL_PUNCTUATION = (".", "!", "?")
TEXT_BUILDERS = ("csv", "json")  # the packaged builders whose files check_data_file reads as plain UTF-8 text
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")
CSV_DIALECT_KWARGS = ("quotechar", "escapechar", "doublequote", "skipinitialspace")

log = logging.getLogger(__name__)


def check_data_file(path: str | Path, spec: DatasetParams) -> None:
    """Refuse a local csv/json data file that `datasets` would choke on with a traceback or a vague message:
    not UTF-8, empty, a csv row whose field count differs from the header's, a JSON Lines line that is not a
    JSON object, a label that is missing or not a whole number (without `label_map`), or a key whose type
    changes. Lines are numbered from 1, as an editor shows them."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = raw[: exc.start].count(b"\n") + 1, exc.start - raw.rfind(b"\n", 0, exc.start)
        raise QuantpipeError(
            f"{path}: line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})"
        ) from None
    if not text.strip():
        raise QuantpipeError(f"{path}: the file is empty")
    if spec.path == "csv":
        _check_csv(path, text, spec)
    elif spec.path == "json" and "field" not in spec.load_kwargs and not text.lstrip().startswith("["):
        _check_json_lines(path, text, spec)


def _class_id_problem(label_field: str, label: object) -> str | None:
    """Why `label` (a JSON value, or a csv field as text) is not a class id, or None."""
    if label is None or (isinstance(label, str) and not label.strip()):
        return f"no {label_field}"
    if isinstance(label, str):
        try:
            label = float(label)
        except ValueError:
            return f"{label_field} {label!r} is not a class id (labels are integers, or set label_map)"
    if isinstance(label, bool) or not isinstance(label, int | float) or not float(label).is_integer():
        return f"{label_field} {plain(label)} is not a class id (labels are integers, or set label_map)"
    return None


def _check_csv(path: str | Path, text: str, spec: DatasetParams) -> None:
    load_kwargs = spec.load_kwargs
    delimiter = load_kwargs.get("delimiter", load_kwargs.get("sep", ","))
    if len(delimiter) != 1:  # a regular expression: pandas' business
        return
    dialect = {key: load_kwargs[key] for key in CSV_DIALECT_KWARGS if key in load_kwargs}
    quoting = load_kwargs.get("quoting", csv.QUOTE_MINIMAL)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting, **dialect)
    try:
        header = next(reader)
        label = header.index(spec.label_field) if spec.label_field in header and not spec.label_map else None
        for row in reader:
            if row and len(row) != len(header):
                raise QuantpipeError(
                    f"{path}: line {reader.line_num} has {len(row)} fields, the header has {len(header)}"
                )
            problem = _class_id_problem(spec.label_field, row[label]) if row and label is not None else None
            if problem:
                raise QuantpipeError(f"{path}: line {reader.line_num}: {problem}")
    except csv.Error as exc:
        raise QuantpipeError(f"{path}: line {reader.line_num}: {exc}") from None


def _json_type(value: object) -> str:
    for kind, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "an object"


def _check_json_lines(path: str | Path, text: str, spec: DatasetParams) -> None:
    first_type: dict[str, tuple[str, int]] = {}  # key -> (type, line) where first seen
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuantpipeError(f"{path}: line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise QuantpipeError(f"{path}: line {number}: not a JSON object")
        problem = None if spec.label_map else _class_id_problem(spec.label_field, row.get(spec.label_field))
        if problem:
            raise QuantpipeError(f"{path}: line {number}: {problem}")
        for key, value in row.items():
            if value is None:
                continue
            kind, seen = first_type.setdefault(key, (_json_type(value), number))
            if _json_type(value) != kind:
                raise QuantpipeError(f"{path}: line {number}: {key} is {_json_type(value)}, line {seen} has {kind}")


def load_split(name: str, spec: DatasetParams, split: str) -> pd.DataFrame:
    """Load one split with `datasets.load_dataset`; `split` may slice (`test[:3000]`)."""
    import datasets

    if spec.data_files:
        for key, file in spec.data_files.items():
            if not Path(file).is_file():
                raise QuantpipeError(f"data.datasets.{name}.data_files.{key}: file not found: {file}")
            if spec.path in TEXT_BUILDERS and not file.endswith(COMPRESSED):
                check_data_file(file, spec)
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(spec.path, spec.name, data_files=spec.data_files, split=split, **spec.load_kwargs)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs the first line only
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


def plain(value: object) -> str:
    """A value as the user wrote it: `2`, `1.5`, `NaN`, `'pos'` (not numpy's `np.int64(2)`); a missing one as
    `nothing`."""
    value = value.item() if isinstance(value, np.generic) else value
    if value is None:
        return "nothing"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return repr(value) if isinstance(value, str) else str(value)


def combine(
    frame: pd.DataFrame,
    spec: DatasetParams,
    name: str,
    num_labels: int,
    empty_texts: str = "error",
    split: str = "",
    source: str | Path = "",
) -> pd.DataFrame:
    """Return a frame with a single `text` column and an integer `label` column. Rows whose text is empty
    (every text field blank) stop the stage (`empty_texts: error`), or are kept (`warn`) or dropped (`drop`)
    with a warning; `split` names the split in the messages, `source` the file the frame was read from (a bad
    label is named by its row there, 1-based)."""
    where = f"{source}: " if source else ""
    needed = [*spec.text_fields, spec.label_field]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        raise QuantpipeError(
            f"{where}data.datasets.{name}: column(s) {missing} not in the data (columns: {list(frame.columns)})"
        )
    if frame.empty:
        raise QuantpipeError(f"data.datasets.{name}: no rows")
    texts = [join_fields(list(row)) for row in frame[spec.text_fields].itertuples(index=False, name=None)]
    labels = frame[spec.label_field]
    if spec.label_map:
        mapped = labels.astype(str).map(spec.label_map)
        unknown = sorted(set(labels[mapped.isna()].astype(str)))
        if unknown:
            row = mapped.isna().to_numpy().argmax() + 1
            raise QuantpipeError(
                f"{where}row {row}: data.datasets.{name}.label_map: no mapping for label(s) {unknown[:5]}"
            )
        labels = mapped
    labels = pd.to_numeric(labels, errors="coerce")
    bad = (labels.isna() | ~labels.isin(range(num_labels))).to_numpy()
    if bad.any():
        row = bad.argmax()
        raise QuantpipeError(
            f"{where}row {row + 1}: data.datasets.{name}.{spec.label_field}: labels must be 0..{num_labels - 1} "
            f"(or set label_map); got {plain(frame[spec.label_field].iloc[row])}"
        )
    out = pd.DataFrame({"text": texts, "label": labels.astype("int64")})
    empty = out["text"] == ""
    if empty.all():
        raise QuantpipeError(f"data.datasets.{name}: every text is empty after combining {spec.text_fields}")
    if empty.any():
        found = (
            f"data.datasets.{name}, split '{split}': {empty.sum()} of {len(out)} texts are empty after "
            f"combining {spec.text_fields} (first: row {empty.to_numpy().argmax() + 1} of the split)"
        )
        if empty_texts == "error":
            raise QuantpipeError(f"{found}; set data.empty_texts to warn (keep them) or drop")
        log.warning(f"{found}; {'dropped' if empty_texts == 'drop' else 'kept'} (data.empty_texts: {empty_texts})")
        if empty_texts == "drop":
            out = out[~empty].reset_index(drop=True)
    return out


def raw_path(root: str | Path, dataset: str, role: str) -> Path:
    return Path(root) / dataset / f"{role}.parquet"


def read_prepared(root: str | Path, dataset: str, role: str) -> pd.DataFrame:
    path = raw_path(root, dataset, role)
    if not path.is_file():
        raise QuantpipeError(f"{path}: prepared split not found (run the combine stage)")
    return read_parquet(path, columns=("text", "label"))
