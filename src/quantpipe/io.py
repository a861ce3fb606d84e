"""The artifacts stages pass each other: written atomically, read with a check.

Atomic outputs: write into a temporary sibling, rename into place only when complete. An interrupted or
failing stage leaves nothing at the output path that a later run could take as done. Temporary siblings are
named `.<name>.tmp-<pid>`: `.gitignore` and `.dvcignore` hide that pattern (a stage killed with SIGKILL leaves
one that neither git nor DVC's hashes see), and the next write of the same output removes the leftovers; a stage
also removes those of its `--out` whose process is gone when it starts (`sweep_temporaries`), and the sweep
stages, which run on every `dvc repro`, remove them under every output directory (`sweep_tree`).

Checked reads: a file that cannot be read (truncated, not the format, missing a part) is one `QuantpipeError`
line naming the file, what is wrong with it, and the stage of `dvc.yaml` that writes it with the command that
rebuilds it (`artifact_error`). JSON and parquet are read here; the engines' files (ONNX, OpenVINO IR, torch
state dicts) by their loaders inside `loading`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quantpipe.errors import QuantpipeError

VARIANT_FILE = "quantpipe_variant.json"  # beside a built variant (quantize stages): its params, what was resolved
PIPELINE_FILE = "dvc.yaml"  # read from the working directory: the stage runs where dvc.yaml is, as `dvc repro` runs it
INTERPOLATION = re.compile(r"\$\{\s*([\w.]+)\s*\}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_temporaries(directory: str | Path, name: str = "*") -> list[Path]:
    """Remove the temporary siblings `.<name>.tmp-<pid>` in `directory` whose process is gone (a run killed
    with SIGKILL, or a write that failed half-way); returns what was removed."""
    swept = []
    for path in sorted(Path(directory).glob(f".{name}.tmp-*")):
        pid = path.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not _running(int(pid)):
            _remove(path)
            swept.append(path)
    return swept


def sweep_tree(root: str | Path) -> list[Path]:
    """`sweep_temporaries` in `root` and every directory under it (none if `root` is not a directory): what killed
    runs left where a later run does not write again (a stage restored from DVC's run-cache does not start)."""
    swept: list[Path] = []
    for directory, subdirectories, _ in os.walk(root):
        swept += sweep_temporaries(directory)
        subdirectories[:] = [name for name in subdirectories if ".tmp-" not in name]
    return swept


def temporary_sibling(target: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `target`, after removing what killed runs left under that pattern
    (`sweep_temporaries`: a running process's write is its own) and this process's own, if a failed write left it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(target.parent, glob.escape(target.name))
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    _remove(tmp)
    return tmp


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (a file, or a directory the caller makes); on success it replaces
    `target`, on failure it is removed."""
    target = Path(target)
    tmp = temporary_sibling(target)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():
        _remove(target)  # os.replace cannot put a directory over a non-empty one
    os.replace(tmp, target)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `target`, on failure it is removed."""
    with atomic_file(target) as tmp:
        tmp.mkdir()
        yield tmp


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp file in the same directory, then rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def _lookup(expr: str, context: Any) -> Any:
    """`a.b` of `context` (nested dicts), or None."""
    for part in expr.split("."):
        context = context.get(part) if isinstance(context, dict) else None
    return context


def _interpolate(template: str, context: dict) -> str | None:
    """`template` with every `${a.b}` looked up in `context` (None where one is not there)."""
    values = [_lookup(expr, context) for expr in INTERPOLATION.findall(template)]
    if any(value is None for value in values):
        return None
    return INTERPOLATION.sub(lambda _: str(values.pop(0)), template)


def _foreach_items(foreach: Any, params: dict) -> list[tuple[str, Any]]:
    """(key, item) of a foreach stage: a literal dict or list, or `${...}` of params.yaml."""
    if isinstance(foreach, str):
        found = INTERPOLATION.fullmatch(foreach.strip())
        foreach = _lookup(found.group(1), params) if found else None
    if isinstance(foreach, dict):
        return list(foreach.items())
    if isinstance(foreach, list):
        return [(str(item), item) for item in foreach]
    return []


def _stage_outputs(stages: dict, params: dict) -> Iterator[tuple[str, str, str]]:
    """(stage name, output path, the stage's `wdir`) of every stage of a dvc.yaml's `stages`, foreach stages as
    `<name>@<key>`."""
    for name, stage in stages.items():
        instances = [(name, stage, {})]
        if isinstance(stage, dict) and "foreach" in stage:
            instances = [
                (f"{name}@{key}", stage.get("do", {}), {"key": key, "item": item})
                for key, item in _foreach_items(stage["foreach"], params)
            ]
        for addressing, body, context in instances:
            for section in ("outs", "metrics", "plots"):
                for out in body.get(section) or [] if isinstance(body, dict) else []:
                    template = next(iter(out)) if isinstance(out, dict) else out
                    path = _interpolate(str(template), {**params, **context})
                    if path is not None:
                        yield addressing, path, str(body.get("wdir", "."))


def writing_stage(path: str | Path) -> str | None:
    """The stage of `dvc.yaml` (in the working directory), or of a pipeline one folder down (`search/dvc.yaml`,
    `seq2seq/dvc.yaml`, addressed as DVC does: `seq2seq/dvc.yaml:seq2seq_data`), whose output holds `path`, or
    None."""
    import yaml

    try:
        params_file = Path("params.yaml")
        params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}
    except yaml.YAMLError:
        return None
    target = Path(path).resolve()
    for pipeline in [Path(PIPELINE_FILE), *sorted(Path().glob(f"*/{PIPELINE_FILE}"))]:
        try:
            stages = yaml.safe_load(pipeline.read_text()).get("stages") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        prefix = "" if pipeline == Path(PIPELINE_FILE) else f"{pipeline.as_posix()}:"
        for addressing, out, wdir in _stage_outputs(stages, params if isinstance(params, dict) else {}):
            if target.is_relative_to((pipeline.parent / wdir / out).resolve()):
                return prefix + addressing
    return None


def artifact_error(path: str | Path, problem: str) -> QuantpipeError:
    """One line: `path`, what is wrong with it, and the stage that writes it with the command to rebuild it."""
    stage = writing_stage(path)
    rebuild = f"it is written by stage {stage}: dvc repro -f -s {stage}" if stage else "rebuild it"
    return QuantpipeError(f"{path}: {problem}; {rebuild}")


def first_line(exc: BaseException) -> str:
    """The informative line of a loader's message: ONNX Runtime's status prefix and OpenVINO's source locations
    dropped, the first sentence kept."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = next((line for line in lines if not line.startswith(("Exception from ", "Check '"))), "")
    line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .* failed:)?", "", line)
    line = re.sub(r"^[\w ]+ '[^']+': ", "", line)  # "Could not open Parquet input source '<path>': ..."
    line = re.split(r"(?<=[a-z)])\. ", line)[0].rstrip(".")
    return line or type(exc).__name__


@contextmanager
def loading(path: str | Path, what: str, errors: tuple[type[BaseException], ...] = (Exception,)) -> Iterator[None]:
    """Run a loader of `path`: its failure (one of `errors`) becomes `artifact_error`, `not a valid <what>
    (<the loader's reason>)`; a QuantpipeError passes as it is."""
    try:
        yield
    except QuantpipeError:
        raise
    except errors as exc:
        raise artifact_error(path, f"not a valid {what} ({first_line(exc)})") from None


def read_json(path: str | Path, expect: type | None = None) -> Any:
    """The JSON in `path` (of type `expect`, if given); a file that is not valid JSON is one line."""
    try:
        data = json.loads(Path(path).read_bytes())
    except json.JSONDecodeError as exc:
        problem = (
            "empty" if not exc.doc.strip() else f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        )
        raise artifact_error(path, problem) from None
    except UnicodeDecodeError:
        raise artifact_error(path, "not valid JSON (not UTF-8 text)") from None
    if expect is not None and not isinstance(data, expect):
        names = {dict: "an object", list: "a list", str: "a string"}
        raise artifact_error(
            path, f"not the JSON expected ({names.get(expect, expect.__name__)}, got {type(data).__name__})"
        )
    return data


def read_parquet(path: str | Path, columns: tuple[str, ...] = ()):
    """The table in `path`, which must hold `columns`; a file that is not valid parquet is one line."""
    import pandas as pd
    import pyarrow

    with loading(path, "parquet file", (pyarrow.ArrowException, OSError)):
        frame = pd.read_parquet(path)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise artifact_error(path, f"no column(s) {missing} (columns: {list(frame.columns)})")
    return frame


def check_model_dir(model_dir: str | Path) -> None:
    """A Hugging Face model directory that `from_pretrained` can read: config.json, generation_config.json and the
    tokenizer's JSON files are JSON objects, every safetensors file's header is whole and matches the file's size,
    and its weights are in safetensors: `pytorch_model*.bin` alone is refused (a pickle, which can run code, and a loader that does not
    find the weights it expects may try another framework's)."""
    from safetensors import SafetensorError, safe_open

    model_dir = Path(model_dir)
    pickled = sorted(model_dir.glob("pytorch_model*.bin"))
    if pickled and not any(model_dir.glob("*.safetensors")):
        raise QuantpipeError(
            f"{pickled[0]}: weights are read from safetensors only (a .bin is a pickle); convert them with "
            "`model.save_pretrained(dir, safe_serialization=True)`"
        )
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "special_tokens_map.json",
    ):
        if (model_dir / name).is_file():
            read_json(model_dir / name, expect=dict)
    for weights in sorted(model_dir.glob("*.safetensors")):
        with loading(weights, "safetensors file", (SafetensorError, OSError)), safe_open(str(weights), "np"):
            pass


def read_onnx(path: str | Path, load_external_data: bool = True):
    """The ONNX graph in `path` (`onnx.load`); a file that is not a whole ONNX protobuf is one line."""
    import onnx
    from google.protobuf.message import DecodeError

    with loading(path, "ONNX model", (DecodeError, OSError, ValueError)):
        return onnx.load(str(path), load_external_data=load_external_data)
