"""Promote the search's winner to a declared variant: `python -m quantpipe.search.promote [--name NAME]` writes
it into params.yaml `variants` (comments kept); `dvc repro` then quantizes, evaluates and times it beside the
others, and `dvc metrics diff` shows it."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import yaml

from quantpipe.cli import run_stage
from quantpipe.config import parse_params, read_params_text
from quantpipe.config.registry import KINDS, get_kind
from quantpipe.config.students import BASE_MODEL
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_file, read_json

RERUN = "run the search: dvc repro search/dvc.yaml"


def declared_keys(variant: dict) -> dict:
    """The winner's keys that differ from its kind's defaults (what a person would write), `kind` and `model` first
    (dvc.yaml's quantize stage depends on the folders of the model a variant names); keys its kind does not know
    are kept, for the params check to name."""
    fields = get_kind(variant["kind"]).params.model_fields
    declared = {
        key: value
        for key, value in variant.items()
        if key not in fields or fields[key].is_required() or value != fields[key].get_default(call_default_factory=True)
    }
    return {"kind": variant["kind"], "model": variant.get("model", BASE_MODEL), **declared}


def read_winner(path: Path) -> dict:
    """The search's winner in `path` (reports/search/winner.json): its trial, label and variant."""
    if not path.is_file():
        raise QuantpipeError(f"{path}: no winner ({RERUN})")
    try:
        winner = read_json(path)  # not valid JSON: one line naming the file and the stage that writes it
    except OSError as exc:
        raise QuantpipeError(f"{path}: cannot be read ({exc.strerror}); {RERUN}") from None
    winner = winner.get("winner") if isinstance(winner, dict) else None
    if not winner:
        raise QuantpipeError(f"{path}: no winner ({RERUN})")
    variant = winner.get("variant") if isinstance(winner, dict) else None
    if not (isinstance(variant, dict) and variant.get("kind") in KINDS and {"trial", "label"} <= winner.keys()):
        raise QuantpipeError(
            f"{path}: winner: not a search winner (a trial, a label, a variant of a known kind); {RERUN}"
        )
    return winner


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _in_block(text: str, key: yaml.Node, section: yaml.Node, name: str, variant: dict, comment: str) -> str:
    """`text` with the entry `name` of the block mapping `section` set to `variant`: lines of other entries,
    comments and aliases stay as they are."""
    lines = text.splitlines(keepends=True)
    entries = section.value if isinstance(section, yaml.MappingNode) else []
    indent = entries[0][0].start_mark.column if entries else 2
    head = key.start_mark.line  # the `variants:` line
    end = section.end_mark  # where the next top-level key starts (or the end of the file)
    limit = min(len(lines), end.line + (1 if end.column else 0)) if entries else head + 1

    def entry_end(start: int) -> int:
        end = next((i for i in range(start + 1, limit) if lines[i].strip() and _indent(lines[i]) <= indent), limit)
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        return end

    at = next((key.start_mark.line for key, _ in entries if key.value == name), None)
    if at is not None:
        end = entry_end(at)
        del lines[at:end]
    else:
        at = entry_end(entries[-1][0].start_mark.line) if entries else head + 1
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    body = yaml.safe_dump({name: variant}, sort_keys=False, default_flow_style=None, width=120)
    block = [f"{' ' * indent}{line}\n" for line in body.splitlines()]
    block[0] = block[0].rstrip("\n") + f"  # {comment}\n"
    return "".join(lines[:at] + block + lines[at:])


def _in_flow(text: str, section: yaml.MappingNode, name: str, variant: dict) -> str:
    """`text` with the entry `name` of the flow mapping `section` (`variants: {...}`) set to `variant`, in flow
    style too."""
    entry = f"{name}: {yaml.safe_dump(variant, sort_keys=False, default_flow_style=True, width=10**6).strip()}"
    for key, value in section.value:
        if key.value == name:
            return text[: key.start_mark.index] + entry + text[value.end_mark.index :]
    close = section.end_mark.index - 1  # the closing brace
    return text[:close] + (", " if section.value else "") + entry + text[close:]


def with_variant(text: str, name: str, variant: dict, comment: str) -> str:
    """params.yaml text with `variants.<name>` set to `variant`: an entry of that name is replaced, else the
    entry goes at the end of `variants`; every other line stays as it is (comments, aliases, layout). A layout
    it cannot edit that way is refused (QuantpipeError), never written half right."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    top = root.value if isinstance(root, yaml.MappingNode) else []
    key, section = next(((key, value) for key, value in top if key.value == "variants"), (None, None))
    if section is None:
        raise QuantpipeError("params.yaml: no `variants:` section to promote into")
    if isinstance(section, yaml.MappingNode) and section.flow_style:
        edited = _in_flow(text, section, name, variant)
    elif isinstance(section, yaml.MappingNode) or section.tag == "tag:yaml.org,2002:null":
        edited = _in_block(text, key, section, name, variant, comment)
    else:
        edited = None
    expected = yaml.safe_load(text)
    expected["variants"] = {**(expected["variants"] or {}), name: variant}
    try:
        same = edited is not None and yaml.safe_load(edited) == expected
    except yaml.YAMLError:
        same = False  # e.g. an alias elsewhere of an anchor in the replaced entry
    if not same:
        raise QuantpipeError(
            f"params.yaml: variants: cannot set `{name}` in place in this layout (nothing written); add it by hand: "
            f"{yaml.safe_dump({name: variant}, sort_keys=False, default_flow_style=True, width=10**6).strip()}"
        )
    return edited


def replace_file(path: Path, text: str) -> None:
    """Write `text` over `path` through a temporary sibling renamed into place (a killed run leaves the old file
    whole), with `path`'s permissions; a read-only file is refused."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not os.access(path, os.W_OK) or not mode & 0o222:
        raise QuantpipeError(f"{path}: read-only; nothing written (make it writable to promote into it)")
    try:
        with atomic_file(path) as tmp:
            tmp.write_text(text)
            tmp.chmod(mode)
    except OSError as exc:
        raise QuantpipeError(f"{path}: cannot write ({exc.strerror}); nothing written") from None


def promote(winner_file: Path, params_file: Path, name: str) -> dict:
    winner = read_winner(winner_file)
    before = read_params_text(params_file)
    parse_params(before, params_file)  # the file as it is must be valid before it is edited
    variant = declared_keys(winner["variant"])
    after = with_variant(before, name, variant, f"search winner {winner['trial']}: {winner['label']}")
    try:
        parse_params(after, params_file)
    except QuantpipeError as exc:
        raise QuantpipeError(f"{exc} (the promoted variant; nothing written)") from None
    replace_file(params_file, after)
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
