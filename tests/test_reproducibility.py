"""Outputs that must not change when nothing changed, and what a killed stage may leave behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import dead_pid

from quantpipe.calibration import calibrate
from quantpipe.config.sections import CalibrationParams
from quantpipe.io import atomic_dir, atomic_file, read_json


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("optimization", ["none", "O2"])
def test_calibration_output_is_byte_identical_on_a_rerun(tiny_onnx, texts, tmp_path, optimization):
    cfg = CalibrationParams(num_samples=16, max_length=16, batch_size=8, optimization=optimization)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        calibrate(tiny_onnx, texts["text"], cfg, tmp_path / run)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    ranges = read_json(tmp_path / "a/ranges.json")
    assert list(ranges) == sorted(ranges)  # sorted keys
    bounds = [float(v) for lo, hi in ranges.values() for v in np.ravel([lo, hi])]
    assert bounds and all(repr(v) == repr(float(str(np.float32(v)))) for v in bounds)  # shortest float32 text


def test_leftovers_of_a_killed_write_are_removed_by_the_next_one(tmp_path):
    # what SIGKILL leaves: the temporary sibling of a directory output and of a file output
    dead, running = dead_pid(), os.getppid()
    (tmp_path / f".ranges.tmp-{dead}").mkdir()
    (tmp_path / f".ranges.tmp-{dead}/half.json").write_text("{")
    (tmp_path / f".report.md.tmp-{dead}").write_text("half")
    (tmp_path / f".report.md.tmp-{running}").write_text("a running process's write")  # its own: kept
    (tmp_path / f".report.md.tmp-{os.getpid()}").write_text("a failed write of this process")
    (tmp_path / f".other.tmp-{dead}").mkdir()  # another output's leftover: not this write's business
    with atomic_dir(tmp_path / "ranges") as tmp:
        (tmp / "ranges.json").write_text("{}")
    with atomic_file(tmp_path / "report.md") as tmp:
        tmp.write_text("done")
    left = [f".other.tmp-{dead}", f".report.md.tmp-{running}", "ranges", "report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(left)
    assert (tmp_path / "report.md").read_text() == "done"


def test_a_failed_file_write_leaves_the_old_file(tmp_path):
    (tmp_path / "report.md").write_text("old")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "report.md") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"] and (tmp_path / "report.md").read_text() == "old"
