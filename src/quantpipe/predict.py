"""Classify texts with a shipped model (models/ship/<dataset>), served exactly as its serving.json says (engine,
threads, streams, batch size, tokens read): one JSON line per text, `label` and `score` (its probability).

    python -m quantpipe.predict models/ship/sst2 texts.txt --output predictions.jsonl
    python -m quantpipe.predict models/ship/amazon reviews.jsonl --text-field content

Input: one text per line, or JSON lines (`.jsonl`, or `--format jsonl`) with the text in `--text-field`; `-` (the
default) reads standard input. The process imports only what the model's engine needs (no torch for ONNX Runtime
or OpenVINO models)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from quantpipe.cli import run_stage
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict
from quantpipe.io import atomic_file
from quantpipe.shipping import read_serving

CHUNK = 1024  # texts per progress step


def read_texts(source: str, form: str, field: str) -> list[str]:
    """The texts of `source` (a path or `-`): one per line, or the `field` of each JSON line."""
    name = "<stdin>" if source == "-" else source
    try:
        data = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuantpipeError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    lines = data.splitlines()
    if form == "auto":
        form = "jsonl" if Path(source).suffix in (".jsonl", ".ndjson") else "lines"
    if form == "lines":
        texts = lines
    else:
        texts = [_json_text(name, number, line, field) for number, line in enumerate(lines, 1) if line.strip()]
    if not texts:
        raise QuantpipeError(f"{name}: no texts to classify")
    return texts


def _json_text(name: str, number: int, line: str, field: str) -> str:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QuantpipeError(f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict) or field not in item:
        raise QuantpipeError(f"{name}:{number}: no {field!r} field (--text-field names it)")
    if not isinstance(item[field], str):
        raise QuantpipeError(f"{name}:{number}: {field!r} is not a string")
    return item[field]


def classify(model_dir: str | Path, texts: list[str]) -> list[dict]:
    """`label` and `score` per text, from the shipped model in `model_dir` served as its serving.json says."""
    kind, variant, cfg, labels = read_serving(model_dir)
    kind.check_available(Path(model_dir).name, section="ship")
    tokenizer = Tokenizer(model_dir)
    runtime = kind.load(Path(model_dir), variant, cfg)
    policy = variant.length_policy(cfg)
    out = []
    with tqdm(total=len(texts), desc="predict", unit="text", disable=len(texts) <= CHUNK) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            run = predict(runtime, tokenizer, chunk, cfg.batch_size, policy)
            out += [{"label": labels[i], "score": round(float(s), 6)} for i, s in zip(run.labels, run.scores)]
            bar.update(len(chunk))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a shipped model directory (models/ship/<dataset>)")
    parser.add_argument("input", nargs="?", default="-", help="texts: a file, or - for standard input (default)")
    parser.add_argument("--output", "-o", type=Path, help="where the JSON lines go (default: standard output)")
    parser.add_argument("--format", choices=("auto", "lines", "jsonl"), default="auto", help="auto: jsonl for .jsonl")
    parser.add_argument("--text-field", default="text", help="the field of a JSON line holding its text")
    args = parser.parse_args()
    texts = read_texts(args.input, args.format, args.text_field)
    lines = "".join(json.dumps(row) + "\n" for row in classify(args.model, texts))
    if args.output is None:
        sys.stdout.write(lines)
        return
    with atomic_file(args.output) as tmp:
        tmp.write_text(lines)


if __name__ == "__main__":
    run_stage(main)
