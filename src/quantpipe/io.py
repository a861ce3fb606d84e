"""Atomic outputs: write into a temporary sibling, rename into place only when complete.

An interrupted or failing stage leaves nothing at the output path that a later run could take as done.
Temporary siblings are named `.<name>.tmp-<pid>`: `.gitignore` and `.dvcignore` hide that pattern (a stage
killed with SIGKILL leaves one that neither git nor DVC's hashes see), and the next write of the same output
removes the leftovers.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def temporary_sibling(target: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `target`, after removing what killed runs left under that pattern."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        _remove(stale)
    return target.parent / f".{target.name}.tmp-{os.getpid()}"


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


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
