"""Stage scripts: bad input stops at once with one line naming the param or file, and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from quantpipe.io import atomic_dir, read_json

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def run_stage(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_preset_stops_quantize_and_writes_nothing(tmp_path):
    params = yaml.safe_load(yaml.safe_dump(DEFAULT))
    params["variants"]["dynamic_int8"]["preset"] = "avx9"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "quantized"
    proc = run_stage(
        "quantize.py",
        "--params",
        str(tmp_path / "params.yaml"),
        "--name",
        "dynamic_int8",
        "--onnx",
        str(tmp_path / "onnx"),
        "--out",
        str(out),
    )
    assert_one_line_error(proc, "variants.dynamic_int8.preset", "avx9")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_missing_model_path_stops_base_model(tmp_path):
    params = yaml.safe_load(yaml.safe_dump(DEFAULT))
    params["base_model"]["encoder"] = "./models/does-not-exist"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = tmp_path / "prepared" / "sst2"
    prepared.mkdir(parents=True)
    import pandas as pd

    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(prepared / "train.parquet")
    out = tmp_path / "base"
    proc = run_stage(
        "base_model.py",
        "--params",
        str(tmp_path / "params.yaml"),
        "--prepared",
        str(tmp_path / "prepared"),
        "--out",
        str(out),
    )
    assert_one_line_error(proc, "base_model.encoder", "does not exist")
    assert not out.exists() and not list(tmp_path.glob(".base.tmp-*"))


def test_missing_column_stops_combine(tmp_path):
    params = yaml.safe_load(yaml.safe_dump(DEFAULT))
    params["data"]["datasets"]["amazon"]["text_fields"] = ["title", "body"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw = tmp_path / "raw"
    download = run_stage("download.py", "--params", str(tmp_path / "params.yaml"), "--out", str(raw))
    assert download.returncode == 0, download.stderr
    proc = run_stage(
        "combine.py", "--params", str(tmp_path / "params.yaml"), "--raw", str(raw), "--out", str(tmp_path / "prepared")
    )
    assert_one_line_error(proc, "data.datasets.amazon", "'body'")
    assert not (tmp_path / "prepared").exists()


def test_atomic_dir_keeps_nothing_on_failure_and_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_sensitivity_is_opt_in(tmp_path):
    out = tmp_path / "sensitivity.json"
    proc = run_stage("sensitivity.py", "--onnx", str(tmp_path / "absent"), "--out", str(out))
    assert proc.returncode == 0 and "sensitivity: off" in proc.stdout
    assert read_json(out) == {"enabled": False}
