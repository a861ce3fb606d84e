"""Promote the search's winner to a declared variant: `python -m quantpipe.search.promote [--name NAME]` writes
it into params.yaml `variants` (comments kept); `dvc repro` then quantizes, evaluates and times it beside the
others, and `dvc metrics diff` shows it."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def promote(winner_file: Path, params_file: Path, name: str) -> dict:
    from ruamel.yaml import YAML

    winner = read_json(winner_file).get("winner") if winner_file.is_file() else None
    if not winner:
        raise QuantpipeError(f"{winner_file}: no winner (run the search: dvc repro search/dvc.yaml)")
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(params_file)
    variant = declared_keys(winner["variant"])
    data["variants"][name] = variant
    data["variants"].yaml_add_eol_comment(f"search winner {winner['trial']}: {winner['label']}", name)
    yaml.dump(data, params_file)
    load_params(params_file)
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
