"""Promote the search's winner to a declared variant: `python -m quantpipe.search.promote [--name NAME]` writes
it into params.yaml `variants` (comments kept); `dvc repro` then quantizes, evaluates and times it beside the
others, and `dvc metrics diff` shows it."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from quantpipe.cli import run_stage
from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json
from quantpipe.kinds import get_kind
from quantpipe.params import load_params


def declared_keys(variant: dict) -> dict:
    """The winner's keys that differ from its kind's defaults (what a person would write), `kind` first."""
    fields = get_kind(variant["kind"]).params.model_fields
    return {
        key: value
        for key, value in variant.items()
        if key == "kind" or fields[key].is_required() or value != fields[key].get_default(call_default_factory=True)
    }


def with_variant(text: str, name: str, variant: dict, comment: str) -> str:
    """params.yaml text with `variants.<name>` set to `variant`: an entry of that name is replaced, else the
    entry goes at the end of `variants`; every other line stays as it is (comments, aliases, layout)."""
    lines = text.splitlines(keepends=True)
    top = [i for i, line in enumerate(lines) if line[:1].strip() and not line.startswith("#")]
    if not any(lines[i].startswith("variants:") for i in top):
        raise QuantpipeError("params.yaml: no `variants:` section to promote into")
    first = next(i for i in top if lines[i].startswith("variants:"))
    end = next((i for i in top if i > first), len(lines))
    while end > first + 1 and not lines[end - 1].strip():
        end -= 1
    entry = [i for i in range(first + 1, end) if lines[i].startswith(f"  {name}:")]
    if entry:
        stop = next(
            (i for i in range(entry[0] + 1, end) if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= 2),
            end,
        )
        del lines[entry[0] : stop]
        end -= stop - entry[0]
    body = yaml.safe_dump({name: variant}, sort_keys=False, default_flow_style=None, width=120)
    block = [f"  {line}\n" for line in body.splitlines()]
    block[0] = block[0].rstrip("\n") + f"  # {comment}\n"
    return "".join(lines[:end] + block + lines[end:])


def promote(winner_file: Path, params_file: Path, name: str) -> dict:
    winner = read_json(winner_file).get("winner") if winner_file.is_file() else None
    if not winner:
        raise QuantpipeError(f"{winner_file}: no winner (run the search: dvc repro search/dvc.yaml)")
    variant = declared_keys(winner["variant"])
    before = params_file.read_text()
    params_file.write_text(with_variant(before, name, variant, f"search winner {winner['trial']}: {winner['label']}"))
    try:
        load_params(params_file)
    except QuantpipeError:
        params_file.write_text(before)
        raise
    return variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="search_winner", help="the variant name written")
    parser.add_argument("--winner", type=Path, default=Path("reports/search/winner.json"), help="the search's winner")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file")
    args = parser.parse_args()
    variant = promote(args.winner, args.params, args.name)
    print(f"variants.{args.name} written to {args.params}: {variant}; run `dvc repro` to measure it beside the others")


if __name__ == "__main__":
    run_stage(main)
