"""Bad input: the stage exits 1 with one `error: ` line naming the param or file (and line) and the cause,
no traceback, and writes nothing."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_stages_cli import DEFAULT, assert_one_line_error, run_stage

from quantpipe.config.sections import DatasetParams
from quantpipe.data import combine

LOG_LINE = re.compile(r"(INFO|WARNING) [\w.]+: |[\w ]+: +\d+%\|")  # a log line, or a progress bar's


def write_params(tmp_path: Path, change) -> str:
    params = yaml.safe_load(yaml.safe_dump(DEFAULT))
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def assert_refused(proc: subprocess.CompletedProcess, out: Path, *fragments: str, logs_first: bool = False) -> None:
    """One `error: ` line with every fragment (after the log lines and progress bars of work done before the
    check, if `logs_first`), no traceback, nothing at `out` and no temporary sibling."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not (logs_first and LOG_LINE.match(line))]
    assert_one_line_error(
        subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "\n".join(lines)), *fragments
    )
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def only_dataset(params: dict, spec: dict) -> None:
    """Make `tiny` (train and eval split `train`) the only dataset."""
    params["data"].update(
        datasets={"tiny": {"train_split": "train", "eval_split": "train", **spec}}, train_dataset="tiny"
    )
    params["evaluate"]["datasets"] = ["tiny"]
    params["sensitivity"]["dataset"] = "tiny"
    params.pop("search")  # they name the shipped datasets
    params.pop("seq2seq")


@pytest.mark.parametrize(
    ("change", "key", "hint"),
    [
        (lambda p: p.update(variannts={}), "variannts", "variants"),
        (lambda p: p.update(evaluatee=p.pop("evaluate")), "evaluatee", "evaluate"),  # not "evaluate: Field required"
        (
            lambda p: p["variants"]["dynamic_int8"].update(per_chanel=True),
            "variants.dynamic_int8.per_chanel",
            "per_channel",
        ),
    ],
)
def test_unknown_key_names_the_closest_known_one(tmp_path, change, key, hint):
    params = write_params(tmp_path, change)
    out = tmp_path / "raw"
    proc = run_stage("download.py", "--params", params, "--out", str(out))
    assert_refused(proc, out, f"params.yaml: {key}: unknown key (did you mean '{hint}'?)")


@pytest.mark.parametrize("stage", ["evaluate.py", "side_by_side.py", "sensitivity.py"])
def test_max_length_above_the_position_limit(tmp_path, tiny_model, stage):
    def change(params):
        params["evaluate"]["max_length"] = 200  # the tiny model has 128 positions
        params["sensitivity"]["enabled"] = True

    params = write_params(tmp_path, change)
    prepared = tmp_path / "prepared"
    for dataset in DEFAULT["evaluate"]["datasets"]:
        (prepared / dataset).mkdir(parents=True)
        pd.DataFrame({"text": ["good film " * 200, "bad"], "label": [1, 0]}).to_parquet(
            prepared / dataset / "eval.parquet"
        )
    out = tmp_path / "out"
    models = {
        "evaluate.py": ["--name", "pytorch_fp32", "--base", str(tiny_model)],
        "side_by_side.py": [
            "--base",
            str(tiny_model),
            "--onnx",
            str(tmp_path / "onnx"),
            "--quantized",
            str(tmp_path / "quantized"),
        ],
        "sensitivity.py": [
            "--base",
            str(tiny_model),
            "--onnx",
            str(tmp_path / "onnx"),
            "--calibration",
            str(tmp_path / "calibration"),
        ],
    }[stage]
    proc = run_stage(stage, "--params", params, *models, "--prepared", str(prepared), "--out", str(out))
    assert_refused(
        proc,
        out,
        "error: evaluate.max_length: 200 exceeds the model's position limit 128 "
        f"({tiny_model / 'config.json'} max_position_embeddings)",
    )


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("variants", "fast int8"),
        ("variants", "int8.v2"),
        ("calibrations", "minmax;50"),
        ("data.datasets", "amazon reviews"),
    ],
)
def test_names_with_spaces_or_shell_characters(tmp_path, section, name):
    def change(params):
        if section == "data.datasets":
            params["data"]["datasets"][name] = params["data"]["datasets"].pop("amazon")
            params["evaluate"]["datasets"] = [name if d == "amazon" else d for d in params["evaluate"]["datasets"]]
        else:
            params[section][name] = next(iter(params[section].values()))

    params = write_params(tmp_path, change)
    out = tmp_path / "out"
    stage, args = {
        "variants": ("quantize.py", ["--name", name, "--onnx", str(tmp_path / "onnx")]),
        "calibrations": ("calibrate.py", ["--name", name, "--onnx", str(tmp_path / "onnx")]),
        "data.datasets": ("download.py", []),
    }[section]
    proc = run_stage(stage, "--params", params, *args, "--out", str(out))
    assert_refused(proc, out, f"{section}: '{name}' is not a valid name")


@pytest.mark.parametrize(
    ("optimization", "node", "fragments"),
    [
        # a misspelt node of the exported graph: the error shows the real one
        (
            "none",
            "/bert/encoder/layer.0/attention/self/quer/MatMul",
            ["not in", "onnx/model.onnx", "close: ['/bert/encoder/layer.0/attention/self/query/MatMul'"],
        ),
        # a node of the exported graph that O2 fuses into Attention: absent from the graph quantized
        ("O2", "/bert/encoder/layer.0/attention/self/query/MatMul", ["not in the O2-optimized graph"]),
    ],
)
def test_nodes_to_exclude_must_be_in_the_graph_quantized(tmp_path, tiny_onnx, optimization, node, fragments):
    params = write_params(
        tmp_path,
        lambda p: p["variants"].update(
            excl={"kind": "dynamic", "optimization": optimization, "nodes_to_exclude": [node]}
        ),
    )
    out = tmp_path / "quantized" / "excl"
    proc = run_stage("quantize.py", "--params", params, "--name", "excl", "--onnx", str(tiny_onnx), "--out", str(out))
    # the fused graph is built (and logged) before its node names can be checked
    assert_refused(
        proc, out, f"variants.excl.nodes_to_exclude: ['{node}']", *fragments, logs_first=optimization != "none"
    )


def assert_download_refuses(tmp_path: Path, file: str, content: bytes, cause: str) -> None:
    """The download stage, given `content` as the local data file `file` (JSON Lines or TSV), stops with
    `<the file>: <cause>` and writes nothing."""
    data = tmp_path / file
    data.write_bytes(content)
    builder = {".jsonl": {"path": "json"}, ".tsv": {"path": "csv", "load_kwargs": {"delimiter": "\t", "quoting": 3}}}
    spec = {**builder[data.suffix], "data_files": {"train": str(data)}, "text_fields": ["text"]}
    params = write_params(tmp_path, lambda p: only_dataset(p, spec))
    out = tmp_path / "raw"
    proc = run_stage("download.py", "--params", params, "--out", str(out))
    assert_refused(proc, out, f"error: {data}: {cause}")


@pytest.mark.parametrize(
    ("file", "content", "cause"),
    [
        (
            "reviews.jsonl",
            b'{"text": "good", "label": 1}\n{"text": "bad", "label": "positive"}\n',
            "line 2: label 'positive' is not a class id (labels are integers, or set label_map)",
        ),
        (
            "reviews.jsonl",
            b'{"text": "good", "label": 1}\n{"text": "caf\xe9", "label": 0}\n',
            "line 2: not UTF-8 (byte 0xe9 at column 14)",
        ),
        ("reviews.jsonl", b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0\n', "line 2: not valid JSON"),
        ("sentences.tsv", b"text\tlabel\ngood\t1\nbad\tto\t0\nfun\t1\n", "line 3 has 3 fields, the header has 2"),
        ("sentences.tsv", b"", "the file is empty"),
    ],
    ids=["string-label", "latin-1", "bad-json", "extra-tab", "empty"],
)
def test_bad_data_file_stops_download(tmp_path, file, content, cause):
    assert_download_refuses(tmp_path, file, content, cause)


def test_a_dataset_loading_script_is_refused_in_one_line_and_never_run(tmp_path):
    """Issue 36: a refused dataset script printed `datasets`' ERROR log lines before the error line."""
    script = tmp_path / "reviews.py"
    ran = tmp_path / "ran"
    script.write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n")
    params = write_params(tmp_path, lambda p: only_dataset(p, {"path": str(script), "text_fields": ["text"]}))
    out = tmp_path / "raw"
    proc = run_stage("download.py", "--params", params, "--out", str(out))
    assert_refused(proc, out, f"error: data.datasets.tiny: cannot load split 'train' of '{script}': ")
    assert not ran.exists()


def test_empty_texts_stop_combine(tmp_path):
    params = write_params(tmp_path, lambda p: only_dataset(p, {"path": "json", "text_fields": ["title", "body"]}))
    raw = tmp_path / "raw" / "tiny"
    raw.mkdir(parents=True)
    frame = pd.DataFrame({"title": ["Good", "", "Bad"], "body": ["Fun.", " ", "Broke."], "label": [1, 0, 0]})
    for role in ("train", "eval"):
        frame.to_parquet(raw / f"{role}.parquet")
    out = tmp_path / "prepared"
    proc = run_stage("combine.py", "--params", params, "--raw", str(tmp_path / "raw"), "--out", str(out))
    assert_refused(
        proc,
        out,
        "error: data.datasets.tiny, split 'train': 1 of 3 texts are empty after combining "
        "['title', 'body'] (first: row 2 of the split); set data.empty_texts to warn (keep them) or drop",
    )


@pytest.mark.parametrize(
    ("labels", "row", "got"),
    [([1, 2, 0], 2, "2"), ([1, 0, 1.5], 3, "1.5"), ([float("nan"), 0, 1], 1, "NaN"), ([1, None, 0], 2, "NaN")],
    ids=["two-in-binary", "fraction", "nan", "missing"],
)
def test_a_bad_label_stops_combine_naming_the_file_and_row(tmp_path, labels, row, got):
    params = write_params(tmp_path, lambda p: only_dataset(p, {"path": "json", "text_fields": ["title"]}))
    raw = tmp_path / "raw" / "tiny"
    raw.mkdir(parents=True)
    pd.DataFrame({"title": ["Good", "Fun", "Bad"], "label": labels}).to_parquet(raw / "train.parquet")
    out = tmp_path / "prepared"
    proc = run_stage("combine.py", "--params", params, "--raw", str(tmp_path / "raw"), "--out", str(out))
    assert_refused(
        proc,
        out,
        f"error: {raw / 'train.parquet'}: row {row}: data.datasets.tiny.label: labels must be 0..1 (or set "
        f"label_map); got {got}",
    )


def test_a_missing_label_column_stops_combine_naming_the_file(tmp_path):
    params = write_params(tmp_path, lambda p: only_dataset(p, {"path": "json", "text_fields": ["title"]}))
    raw = tmp_path / "raw" / "tiny"
    raw.mkdir(parents=True)
    pd.DataFrame({"title": ["Good", "Bad"]}).to_parquet(raw / "train.parquet")
    out = tmp_path / "prepared"
    proc = run_stage("combine.py", "--params", params, "--raw", str(tmp_path / "raw"), "--out", str(out))
    assert_refused(
        proc,
        out,
        f"error: {raw / 'train.parquet'}: data.datasets.tiny: column(s) ['label'] not in the data (columns: ['title'])",
    )


@pytest.mark.parametrize(
    ("file", "content", "cause"),
    [
        ("reviews.jsonl", b'{"text": "good", "label": 1}\n{"text": "bad", "label": 1.5}\n', "line 2: label 1.5 is"),
        ("reviews.jsonl", b'{"text": "good", "label": 1}\n\n{"text": "bad", "label": NaN}\n', "line 3: label NaN is"),
        ("reviews.jsonl", b'{"text": "good", "label": 1}\n{"text": "bad"}\n', "line 2: no label"),
        ("sentences.tsv", b"text\tlabel\ngood\t1\nbad\t0.5\n", "line 3: label 0.5 is"),
        ("sentences.tsv", b"text\tlabel\ngood\t1\nbad\t\n", "line 3: no label"),
    ],
    ids=["fraction", "nan", "missing-key", "csv-fraction", "csv-empty"],
)
def test_a_label_that_is_no_class_id_stops_download_naming_the_line(tmp_path, file, content, cause):
    assert_download_refuses(tmp_path, file, content, cause)


@pytest.mark.parametrize(
    ("policy", "texts"), [("warn", ["Good. Fun.", "", "Bad. Broke."]), ("drop", ["Good. Fun.", "Bad. Broke."])]
)
def test_empty_texts_kept_or_dropped_with_a_warning(caplog, policy, texts):
    spec = DatasetParams(path="json", text_fields=["title", "body"])
    frame = pd.DataFrame({"title": ["Good", "", "Bad"], "body": ["Fun.", None, "Broke."], "label": [1, 0, 0]})
    with caplog.at_level(logging.WARNING, logger="quantpipe.data"):
        out = combine(frame, spec, "tiny", 2, policy, "validation")
    assert out["text"].tolist() == texts
    warning = (
        "data.datasets.tiny, split 'validation': 1 of 3 texts are empty after combining ['title', 'body'] "
        f"(first: row 2 of the split); {'dropped' if policy == 'drop' else 'kept'} (data.empty_texts: {policy})"
    )
    assert [r.getMessage() for r in caplog.records] == [warning]
