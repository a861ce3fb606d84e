"""Issue 23: params.yaml values that used to crash a stage later or were silently misread stop at the stage start
with one `error: ` line naming the key (and the lines, for a duplicate), no traceback, nothing written; promote
never leaves a half-edited params.yaml; a second run of the environment stage leaves its record untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_bad_inputs import assert_refused, write_params
from test_stages_cli import assert_one_line_error, run_stage

from quantpipe.config.base import THREADS_PER_CPU

SHIPPED = (REPO / "params.yaml").read_text()
SEEDS = [
    ("calibrations", "minmax_320", "seed"),
    ("evaluate", "seed"),
    ("base_model", "train", "seed"),
    ("search", "seed"),
    ("search", "selection", "seed"),
    ("seq2seq", "model", "train", "seed"),
    ("seq2seq", "data", "seed"),
    ("seq2seq", "evaluate", "seed"),
]


def setter(path: tuple[str, ...], value):
    def change(params: dict) -> None:
        section = params
        for part in path[:-1]:
            section = section[part]
        section[path[-1]] = value

    return change


def refused_at_download(tmp_path, params: str, *fragments: str) -> None:
    out = tmp_path / "raw"
    assert_refused(run_stage("download.py", "--params", params, "--out", str(out)), out, *fragments)


@pytest.mark.parametrize("path", SEEDS, ids=".".join)
def test_negative_seed_is_refused(tmp_path, path):
    refused_at_download(
        tmp_path,
        write_params(tmp_path, setter(path, -1)),
        f"params.yaml: {'.'.join(path)}: ",
        "greater than or equal to 0 (got -1)",
    )


def test_seed_beyond_32_bits_is_refused(tmp_path):
    params = write_params(tmp_path, setter(("evaluate", "seed"), 2**32))
    refused_at_download(tmp_path, params, "params.yaml: evaluate.seed: ", "less than or equal to 4294967295")


@pytest.mark.parametrize(
    "path",
    [
        ("evaluate", "batch_size"),  # was read as 1
        ("base_model", "train", "learning_rate"),  # a float: was read as 1.0
        ("calibrations", "minmax_50", "num_samples"),
        ("variants", "openvino_int8_streams2", "smooth_quant_alpha"),  # a kind's own params
        ("search", "timing", "rounds"),
        ("seq2seq", "evaluate", "max_new_tokens"),
        ("data", "datasets", "sst2", "label_map"),  # a mapping of ints
    ],
    ids=".".join,
)
def test_boolean_for_a_number_is_refused(tmp_path, path):
    value = {"positive": True} if path[-1] == "label_map" else True
    params = write_params(tmp_path, setter(path, value))
    refused_at_download(tmp_path, params, f"params.yaml: {'.'.join(path)}: ", "not a boolean")


@pytest.mark.parametrize(
    ("path", "value", "cause"),
    [
        (("compare", "accuracy_budget"), 0.01, "looks like a fraction; budgets are in accuracy points"),
        (("search", "accuracy_budget"), 0.005, "looks like a fraction; budgets are in accuracy points"),
        (("compare", "accuracy_budget"), 150, "less than or equal to 100"),
    ],
)
def test_budget_in_another_unit_is_refused(tmp_path, path, value, cause):
    params = write_params(tmp_path, setter(path, value))
    refused_at_download(tmp_path, params, f"params.yaml: {'.'.join(path)}: ", cause)


def test_both_budgets_are_accuracy_points():
    from quantpipe.config import load_params

    params = load_params(REPO / "params.yaml")
    assert params.compare.accuracy_budget == 1.0  # one point, as the report prints it
    assert params.search.accuracy_budget == 0.5


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


def test_section_given_twice_is_refused_with_both_lines(tmp_path):
    text = SHIPPED + "\nevaluate:\n  datasets: [sst2]\n"
    (tmp_path / "params.yaml").write_text(text)
    first, second = line_of(SHIPPED, "evaluate:"), len(SHIPPED.splitlines()) + 2
    refused_at_download(
        tmp_path, str(tmp_path / "params.yaml"), f"params.yaml: evaluate: duplicate key (lines {first} and {second}"
    )


@pytest.mark.parametrize(
    ("entry", "where"),
    [("  dynamic_int8:", "variants.dynamic_int8"), ("    arm64:", "seq2seq.variants.arm64")],
)
def test_entry_given_twice_is_refused_with_both_lines(tmp_path, entry, where):
    lines = SHIPPED.splitlines(keepends=True)
    first = line_of(SHIPPED, next(line.rstrip("\n") for line in lines if line.startswith(entry)))
    indent = entry[: len(entry) - len(entry.lstrip())]
    lines.insert(
        first, f"{entry}\n{indent}  preset: arm64\n"
    )  # a second entry of that name right after the first's key
    (tmp_path / "params.yaml").write_text("".join(lines))
    refused_at_download(
        tmp_path, str(tmp_path / "params.yaml"), f"params.yaml: {where}: duplicate key (lines {first} and {first + 1}"
    )


def test_merge_keys_and_aliases_are_not_duplicates():
    """A merge key (`<<: *anchor`) and a key it overrides are one key given once, not a duplicate."""
    from quantpipe.config import parse_params

    text = SHIPPED.replace(
        "  pytorch_fp32_ht128:", "  naive_avx2:\n    <<: *reference_static\n    preset: avx2\n  pytorch_fp32_ht128:"
    )
    assert "naive_avx2:" in text and "naive_avx2" not in SHIPPED
    assert parse_params(text).variants["naive_avx2"].preset == "avx2"


WINNER = {
    "winner": {
        "trial": "t0123456789",
        "label": "kind=openvino, inference_precision=f32",
        "variant": {"kind": "openvino", "calibration": "minmax_320", "inference_precision": "f32"},
    }
}
# as promoted: with the model it is built from (dvc.yaml's quantize stage depends on that model's folders)
PROMOTED = {"kind": "openvino", "model": "base", "calibration": "minmax_320", "inference_precision": "f32"}
# the promote command, its file writes stalled half-way once `ready` exists (a kill -9 lands in the write window)
STALLED_PROMOTE = """
import pathlib, sys, time
from quantpipe.search import promote

ready = pathlib.Path(sys.argv.pop(1))

def stalled(self, text, *args, **kwargs):
    with open(self, "w") as f:
        f.write(text[: len(text) // 2])
    ready.touch()
    time.sleep(600)

pathlib.Path.write_text = stalled
promote.run_stage(promote.main)
"""


def promote(tmp_path: Path, *args: str, stalled: Path | None = None, **popen) -> subprocess.Popen:
    command = ["-c", STALLED_PROMOTE, str(stalled)] if stalled else ["-m", "quantpipe.search.promote"]
    return subprocess.Popen([sys.executable, *command, *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True, **popen)


def winner_file(tmp_path: Path, content: str | None = None) -> Path:
    path = tmp_path / "winner.json"
    path.write_text(json.dumps(WINNER) if content is None else content)
    return path


def run_promote(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = promote(tmp_path, *args)
    _, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)


def test_promote_killed_in_its_write_leaves_params_whole(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(SHIPPED)
    ready = tmp_path / "ready"
    proc = promote(tmp_path, "--winner", str(winner_file(tmp_path)), "--name", "promoted", stalled=ready)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "never reached the write"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert params.read_text() == SHIPPED  # the old text, whole (the new one went to a temporary sibling)
    done = run_promote(tmp_path, "--winner", str(winner_file(tmp_path)), "--name", "promoted")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(params.read_text())["variants"]["promoted"] == PROMOTED
    assert not list(tmp_path.glob(".params.yaml.tmp-*"))  # the next write removed the killed run's leftover


def test_promote_into_flow_style_variants(tmp_path):
    params = yaml.safe_load(SHIPPED)
    variants = params.pop("variants")
    text = yaml.safe_dump(params, sort_keys=False) + "variants: " + yaml.safe_dump(variants, default_flow_style=True)
    (tmp_path / "params.yaml").write_text(text)
    done = run_promote(tmp_path, "--winner", str(winner_file(tmp_path)), "--name", "promoted")
    assert done.returncode == 0, done.stderr
    after = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert after["variants"] == {**variants, "promoted": PROMOTED}
    assert {k: v for k, v in after.items() if k != "variants"} == params


@pytest.mark.parametrize(
    ("winner", "params", "fragments"),
    [
        (None, None, ["missing.yaml: params file not found"]),
        ('{"winner": {"trial": ', SHIPPED, ["winner.json: not valid JSON ("]),
        ('{"winner": {"trial": "t1"}}', SHIPPED, ["winner.json: winner: not a search winner"]),
        (None, "read-only", ["params.yaml: read-only; nothing written"]),
    ],
    ids=["missing params", "corrupt winner", "winner without variant", "read-only params"],
)
def test_promote_refuses_in_one_line(tmp_path, winner, params, fragments):
    path = tmp_path / ("missing.yaml" if params is None else "params.yaml")
    if params is not None:
        path.write_text(SHIPPED)
    if params == "read-only":
        path.chmod(0o444)
    proc = run_promote(tmp_path, "--winner", str(winner_file(tmp_path, winner)), "--params", str(path))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_one_line_error(proc, *fragments)
    assert not path.exists() if params is None else path.read_text() == SHIPPED
    assert not list(tmp_path.glob(".*.tmp-*"))


def run_environment(cwd: Path, out: Path, **env: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "environment.py"), "--out", str(out)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def identity(path: Path) -> tuple[int, int]:
    return path.stat().st_ino, path.stat().st_mtime_ns


def test_environment_rewrites_its_record_only_when_a_fact_changed(tmp_path):
    out = tmp_path / "environment.json"
    run_environment(tmp_path, out)
    first, text = identity(out), out.read_text()
    time.sleep(0.05)  # a rewrite would show in the mtime
    run_environment(tmp_path, out)
    assert identity(out) == first and out.read_text() == text  # same machine: the file is left as it was
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Faked CPU\nflags\t\t: avx2\n")
    run_environment(tmp_path, out, QUANTPIPE_CPUINFO=str(cpuinfo))
    assert json.loads(out.read_text())["cpu"]["model"] == "Faked CPU"


def test_a_truncated_environment_record_is_written_anew(tmp_path):
    out = tmp_path / "environment.json"
    out.write_text('{"cpu": {"model": ')
    run_environment(tmp_path, out)
    assert "versions" in json.loads(out.read_text())


def test_a_second_dvc_repro_leaves_environment_json_untouched(tmp_path):
    """DVC removes a stage's outputs before running it unless they persist: the environment stage's does."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["environment"]
    stage["cmd"] = f"{sys.executable} {REPO / 'stages' / 'environment.py'} --out metrics/environment.json"
    stage.pop("deps")  # the repository's files, not this scratch project's
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"environment": stage}}))
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "repro", "-q"], cwd=tmp_path, check=True)
    out = tmp_path / "metrics" / "environment.json"
    first = identity(out)
    time.sleep(0.05)
    subprocess.run([*dvc, "repro", "-q"], cwd=tmp_path, check=True)
    assert identity(out) == first


# --- issue 36: serving settings within the machine, values read as written, references given once
MAX_THREADS = THREADS_PER_CPU * (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "path",
    [
        ("evaluate", "threads"),
        ("variants", "dynamic_int8", "threads"),
        ("base_model", "train", "threads"),
        ("seq2seq", "evaluate", "threads"),
        ("seq2seq", "variants", "dynamic_int8_streams2", "threads"),
    ],
    ids=".".join,
)
def test_threads_beyond_the_machine_are_refused(tmp_path, path):
    """100000 threads ran the machine out of memory; the bound is a few threads per CPU."""
    params = write_params(tmp_path, setter(path, MAX_THREADS + 1))
    refused_at_download(
        tmp_path, params, f"params.yaml: {'.'.join(path)}: {MAX_THREADS + 1} threads on this machine's", "at most"
    )


def test_threads_up_to_the_bound_are_accepted():
    from quantpipe.config import parse_params

    params = yaml.safe_load(SHIPPED)
    params["evaluate"]["threads"] = MAX_THREADS
    assert parse_params(yaml.safe_dump(params)).evaluate.threads == MAX_THREADS


@pytest.mark.parametrize(
    ("change", "where", "threads"),
    [
        (setter(("variants", "dynamic_int8", "streams"), 100000), "variants.dynamic_int8", "2 thread(s)"),
        (setter(("variants", "openvino_int8_streams2", "streams"), 4), "variants.openvino_int8_streams2", "2"),
        (
            setter(("seq2seq", "variants", "dynamic_int8_streams2", "streams"), 4),
            "seq2seq.variants.dynamic_int8_streams2",
            "2",
        ),
        (lambda params: params["search"]["space"][1].update(streams=[1, 3]), "search.space", "2 thread(s)"),
    ],
    ids=["classification", "openvino", "seq2seq", "search-axis"],
)
def test_more_streams_than_threads_are_refused_alike(tmp_path, change, where, threads):
    """One rule for classification, generation and the search's space: each stream needs a thread of its own."""
    refused_at_download(
        tmp_path,
        write_params(tmp_path, change),
        f"params.yaml: {where}.streams: ",
        f"on {threads}",
        "each stream needs",
    )


@pytest.mark.parametrize(
    ("path", "value", "cause"),
    [
        (("compare", "accuracy_budget"), "1.0", "a number is expected, not a string (got '1.0'"),
        (("variants", "pytorch_bf16", "compile"), "yes", "true or false is expected, not a string (got 'yes'"),
        (("evaluate", "max_samples"), "10", "a number is expected, not a string"),
        (("seq2seq", "with_past"), "no", "true or false is expected, not a string"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else None,
)
def test_a_string_for_a_number_or_a_boolean_is_refused(tmp_path, path, value, cause):
    refused_at_download(
        tmp_path, write_params(tmp_path, setter(path, value)), f"params.yaml: {'.'.join(path)}: ", cause
    )


@pytest.mark.parametrize("path", [("compare", "references"), ("seq2seq", "evaluate", "references")], ids=".".join)
def test_a_reference_given_twice_is_refused(tmp_path, path):
    section = yaml.safe_load(SHIPPED)
    for part in path:
        section = section[part]
    name = section[0]
    params = write_params(tmp_path, setter(path, [*section, name]))
    refused_at_download(tmp_path, params, f"params.yaml: {'.'.join(path)}: {name} given more than once")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda params: params["search"]["space"][1].update(calibration=["nope"]), "search.space.calibration"),
        (lambda params: params["search"]["base"].update(kind="static", calibration="nope"), "search.base.calibration"),
    ],
    ids=["space", "base"],
)
def test_a_search_naming_an_unknown_calibration_is_refused(tmp_path, change, where):
    """Issue 36: each trial failed with `KeyError: 'nope'` and the search ended green."""
    refused_at_download(
        tmp_path, write_params(tmp_path, change), f"params.yaml: {where}: 'nope' is not one of calibrations ["
    )


@pytest.mark.parametrize("address", ["nohostport", "localhost:abc", "ray://:10001", "localhost:70000"])
def test_a_malformed_ray_address_is_refused(tmp_path, address):
    """Issue 36: `ray.init` raised `ValueError: Invalid address format` in a traceback."""
    params = write_params(tmp_path, setter(("search", "ray_address"), address))
    refused_at_download(
        tmp_path, params, f"params.yaml: search.ray_address: {address!r} is not a Ray address (auto, host:port"
    )


@pytest.mark.parametrize(
    ("path", "value", "cause"),
    [
        (("data", "datasets", "sst2", "load_kwargs"), {"trust_remote_code": True}, "trust_remote_code: refused"),
        (("seq2seq", "data", "max_words"), 1, "greater than or equal to 4 (got 1)"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else None,
)
def test_values_that_were_silently_accepted_are_refused(tmp_path, path, value, cause):
    """Issue 36: a dataset script allowed to run code; 16 one-word training pairs, then a model trained on them."""
    refused_at_download(
        tmp_path, write_params(tmp_path, setter(path, value)), f"params.yaml: {'.'.join(path)}: ", cause
    )


@pytest.mark.parametrize(
    ("axis", "value", "cause"),
    [
        ("threads", 100000, "100000 threads on this machine's"),
        ("per_channel", "yes", "true or false is expected, not a string"),
    ],
)
def test_a_search_axis_value_no_trial_can_take_is_refused(tmp_path, axis, value, cause):
    """Issue 36: such a value made a combination the search skipped, without a word before the trials."""
    params = write_params(tmp_path, lambda params: params["search"]["space"][0].update({axis: [value]}))
    refused_at_download(tmp_path, params, f"params.yaml: search.space.{axis}: ", cause)
