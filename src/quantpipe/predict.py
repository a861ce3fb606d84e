"""Classify texts with a shipped model (models/ship/<dataset>), served exactly as its serving.json says (engine,
threads, streams, batch size, tokens read): one JSON line per text, `label` and `score` (its probability).

    python -m quantpipe.predict models/ship/sst2 texts.txt --output predictions.jsonl
    python -m quantpipe.predict models/ship/amazon reviews.jsonl

Input: one text per line, or JSON lines (`.jsonl`, or `--format jsonl`) whose text is the model's `text_fields`
(serving.json: the fields it was evaluated on, joined as the pipeline joins them; `--text-field` names others);
`-` (the default) reads standard input. The process imports only what the model's engine needs (no torch for ONNX
Runtime or OpenVINO models)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from quantpipe.cli import run_stage
from quantpipe.data import join_fields
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict
from quantpipe.io import atomic_file
from quantpipe.shipping import Served, read_serving

BATCHES_PER_STEP = 32  # batches per progress step


def read_texts(source: str, form: str, fields: list[str]) -> list[str]:
    """The texts of `source` (a path or `-`): one per line, or `fields` of each JSON line joined into one text."""
    name = "<stdin>" if source == "-" else source
    try:
        data = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuantpipeError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise QuantpipeError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    lines = data.split("\n")  # newlines only: a text may hold other line separators (U+2028, form feeds)
    if lines and lines[-1] == "":
        lines.pop()
    if form == "auto":
        form = "jsonl" if Path(source).suffix in (".jsonl", ".ndjson") else "lines"
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise QuantpipeError(f"{name}:{number}: an empty line (one text per line, one output line per text)")
        texts.append(line if form == "lines" else _json_text(name, number, line, fields))
    if not texts:
        raise QuantpipeError(f"{name}: no texts to classify")
    return texts


def _json_text(name: str, number: int, line: str, fields: list[str]) -> str:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QuantpipeError(f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise QuantpipeError(f"{name}:{number}: not a JSON object")
    missing = [field for field in fields if field not in item]
    if missing:
        raise QuantpipeError(f"{name}:{number}: no {missing[0]!r} field (--text-field names the text's fields)")
    if not all(isinstance(item[field], str | None) for field in fields):
        raise QuantpipeError(f"{name}:{number}: a text field that is not a string ({', '.join(fields)})")
    return join_fields([item[field] for field in fields])


def classify(served: Served, model_dir: Path, texts: list[str]) -> list[dict]:
    """`label` and `score` per text, from the shipped model in `model_dir` served as `served` says. The texts go
    through the model longest first in batches of `batch_size`, as evaluate passed them: the same batches, so the
    same labels (int8 with dynamic activation ranges depends on what a batch holds)."""
    tokenizer = Tokenizer(model_dir)
    runtime = served.kind.load(model_dir, served.variant, served.cfg)
    policy = served.variant.length_policy(served.cfg)
    lengths = [len(feature["input_ids"]) for feature in tokenizer.encode(texts, policy)]
    order = np.argsort(-np.asarray(lengths), kind="stable")  # the order `predict` sorts a whole list into
    step = BATCHES_PER_STEP * served.cfg.batch_size
    labels, scores = np.empty(len(texts), dtype=np.int64), np.empty(len(texts), dtype=np.float32)
    with tqdm(total=len(texts), desc="predict", unit="text", disable=len(texts) <= step) as bar:
        for start in range(0, len(texts), step):
            part = order[start : start + step]
            run = predict(runtime, tokenizer, [texts[i] for i in part], served.cfg.batch_size, policy)
            labels[part], scores[part] = run.labels, run.scores
            bar.update(len(part))
    return [{"label": served.labels[i], "score": round(float(s), 6)} for i, s in zip(labels, scores)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a shipped model directory (models/ship/<dataset>)")
    parser.add_argument("input", nargs="?", default="-", help="texts: a file, or - for standard input (default)")
    parser.add_argument("--output", "-o", type=Path, help="where the JSON lines go (default: standard output)")
    parser.add_argument("--format", choices=("auto", "lines", "jsonl"), default="auto", help="auto: jsonl for .jsonl")
    parser.add_argument(
        "--text-field",
        action="append",
        dest="fields",
        help="a JSON line's text field (repeat to join several; default: serving.json's text_fields)",
    )
    args = parser.parse_args()
    served = read_serving(args.model)
    served.kind.check_available(served.name)
    texts = read_texts(args.input, args.format, args.fields or served.text_fields)
    lines = "".join(json.dumps(row) + "\n" for row in classify(served, args.model, texts))
    if args.output is None:
        sys.stdout.write(lines)
        return
    with atomic_file(args.output) as tmp:
        tmp.write_text(lines)


if __name__ == "__main__":
    run_stage(main)
