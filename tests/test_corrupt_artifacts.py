"""Corrupt artifacts: a stage that reads a truncated or malformed file another stage wrote exits 1 with one
`error: ` line naming the file, what is wrong with it and the stage that writes it with the command to rebuild
it, no traceback, and writes nothing. Each case runs the stage's command line as dvc.yaml runs it, in a small
project (dvc.yaml, tiny params, the artifacts at their dvc.yaml paths)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, dead_pid, tiny_params
from test_bad_inputs import assert_refused

from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE


def corrupt(path: Path, how: str = "truncate") -> None:
    """`truncate`: the first half of the file is left; otherwise `how` is the file's new text."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else how.encode())


def rebuild(stage: str) -> str:
    return f"; it is written by stage {stage}: dvc repro -f -s {stage}"


@pytest.fixture(scope="module")
def mini_project(tmp_path_factory, tiny_model, tiny_onnx, texts) -> Path:
    """dvc.yaml and tiny params, the base model, its ONNX export, the data splits, ranges of calibration
    minmax_50, and stand-ins for variant directories (the files a test corrupts)."""
    root = tmp_path_factory.mktemp("corrupt") / "project"
    root.mkdir()
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model), sort_keys=False))
    shutil.copytree(tiny_model, root / "models/pytorch/base")
    shutil.copytree(tiny_onnx, root / "models/onnx/base")
    for dataset in ("sst2", "amazon"):
        for role in ("train", "eval"):
            for folder, frame in (("prepared", texts), ("raw", texts.rename(columns={"text": "sentence"}))):
                (root / "data" / folder / dataset).mkdir(parents=True, exist_ok=True)
                frame.to_parquet(root / "data" / folder / dataset / f"{role}.parquet", index=False)
    (root / "models/calibration/minmax_50").mkdir(parents=True)
    (root / "models/calibration/minmax_50/ranges.json").write_text('{"logits": [-1.0, 1.0]}\n')
    for name, kind in (("dynamic_int8", "dynamic"), ("torch_dynamic_int8", "torch_dynamic")):
        shutil.copytree(tiny_onnx, root / "models/quantized" / name)
        (root / "models/quantized" / name / VARIANT_FILE).write_text(f'{{"kind": "{kind}", "resolved": {{}}}}')
    (root / "models/quantized/torch_dynamic_int8/model.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    openvino = root / "models/quantized/openvino_default"
    shutil.copytree(tiny_onnx, openvino)
    import openvino as ov

    ov.save_model(ov.convert_model(str(tiny_onnx / "model.onnx")), str(openvino / "openvino_model.xml"))
    (openvino / VARIANT_FILE).write_text('{"kind": "openvino", "resolved": {}}')
    return root


@pytest.fixture
def project(mini_project, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(mini_project, root)
    return root


def run_in(project: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """`python stages/<script> <args>` in `project`, as `dvc repro` runs it there."""
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args],
        cwd=project,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )


def evaluate(project: Path, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    proc = run_in(
        project, "evaluate.py", "--name", name, "--out", f"metrics/eval/{name}", "--predictions", "predictions"
    )
    assert not (project / "predictions" / name).exists()
    return proc, project / "metrics/eval" / name


@pytest.mark.parametrize(
    ("model", "file", "content", "cause", "stage"),
    [
        (
            "dynamic_int8",
            "models/quantized/dynamic_int8/model.onnx",
            "truncate",
            "not a valid ONNX model (Protobuf parsing failed)",
            "quantize@dynamic_int8",
        ),
        (
            "onnx_fp32",
            "models/onnx/base/model.onnx",
            "truncate",
            "not a valid ONNX model (Protobuf parsing failed)",
            "export",
        ),
        (
            "torch_dynamic_int8",
            "models/quantized/torch_dynamic_int8/model.pt",
            "truncate",
            "not a valid torch state dict (PytorchStreamReader failed reading zip archive",
            "quantize@torch_dynamic_int8",
        ),
        (
            "openvino_default",
            "models/quantized/openvino_default/openvino_model.xml",
            "truncate",
            "not a valid OpenVINO model (",
            "quantize@openvino_default",
        ),
        (
            "pytorch_fp32",
            "models/pytorch/base/config.json",
            "{garbage",
            "not valid JSON (Expecting property name",
            "base_model",
        ),
        (
            "pytorch_fp32",
            "models/pytorch/base/model.safetensors",
            "truncate",
            "not a valid safetensors file (",
            "base_model",
        ),
        ("onnx_fp32", "models/pytorch/base/tokenizer.json", "truncate", "not a valid tokenizer (", "base_model"),
        (
            "onnx_fp32",
            "data/prepared/sst2/eval.parquet",
            "truncate",
            "not a valid parquet file (Parquet magic",
            "combine",
        ),
    ],
    ids=[
        "quantized-onnx",
        "fp32-onnx",
        "torch-dynamic-pt",
        "openvino-xml",
        "config",
        "safetensors",
        "tokenizer",
        "parquet",
    ],
)
def test_evaluate_names_the_corrupt_file_and_its_stage(project, model, file, content, cause, stage):
    corrupt(project / file, content)
    proc, out = evaluate(project, model)
    assert_refused(proc, out, f"error: {file}: {cause}", rebuild(stage))


def test_a_crafted_pickle_in_model_pt_does_not_run(project, tmp_path):
    """A `model.pt` whose unpickling would call os.system is refused in one line; the call never happens."""
    import torch

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Payload()}, project / "models/quantized/torch_dynamic_int8/model.pt")
    proc, out = evaluate(project, "torch_dynamic_int8")
    assert_refused(
        proc,
        out,
        "error: models/quantized/torch_dynamic_int8/model.pt: refused to load: it asks the unpickler for "
        "`posix.system`, not tensors",
        rebuild("quantize@torch_dynamic_int8"),
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "cause"),
    [("truncate", "not valid JSON ("), ("{}", "no tensor ranges"), ('{"logits": [1]}', "tensor 'logits': [1] is not")],
    ids=["truncated", "empty", "one-bound"],
)
def test_quantize_names_corrupt_calibration_ranges(project, content, cause):
    file = "models/calibration/minmax_50/ranges.json"
    corrupt(project / file, content)
    proc = run_in(project, "quantize.py", "--name", "static_naive", "--out", "models/quantized/static_naive")
    out = project / "models/quantized/static_naive"
    # the variant's preset warning comes first
    assert_refused(proc, out, f"error: {file}: {cause}", rebuild("calibrate@minmax_50"), logs_first=True)


def test_quantize_and_calibrate_name_a_corrupt_fp32_export(project):
    corrupt(project / "models/onnx/base/model.onnx")
    proc = run_in(project, "quantize.py", "--name", "dynamic_int8", "--out", "models/quantized/dynamic_int8_new")
    assert_refused(
        proc,
        project / "models/quantized/dynamic_int8_new",
        "error: models/onnx/base/model.onnx: not a valid ONNX model (",
        rebuild("export"),
    )
    out = project / "models/calibration/minmax_320"
    proc = run_in(
        project,
        "calibrate.py",
        "--name",
        "minmax_320",
        "--onnx",
        "models/onnx/base",
        "--prepared",
        "data/prepared",
        "--out",
        str(out.relative_to(project)),
    )
    assert_refused(
        proc,
        out,
        "error: models/onnx/base/model.onnx: not a valid ONNX model (Protobuf parsing failed)",
        rebuild("export"),
    )


def test_export_names_a_corrupt_base_model(project):
    corrupt(project / "models/pytorch/base/config.json", "[1, 2")
    shutil.rmtree(project / "models/onnx/base")  # dvc repro removes a stage's outputs before running it
    proc = run_in(project, "export.py", "--base", "models/pytorch/base", "--out", "models/onnx/base")
    assert_refused(
        proc,
        project / "models/onnx/base",
        "error: models/pytorch/base/config.json: not valid JSON (",
        rebuild("base_model"),
    )


def test_combine_names_a_corrupt_raw_split(project):
    corrupt(project / "data/raw/sst2/train.parquet")
    shutil.rmtree(project / "data/prepared")
    proc = run_in(project, "combine.py", "--raw", "data/raw", "--out", "data/prepared")
    assert_refused(
        proc,
        project / "data/prepared",
        "error: data/raw/sst2/train.parquet: not a valid parquet file (",
        rebuild("download"),
    )


def test_compare_names_a_corrupt_eval_json(project):
    (project / "metrics/eval/pytorch_fp32").mkdir(parents=True)
    (project / "metrics/eval/pytorch_fp32/sst2.json").write_text('{"variant": "pytorch_fp32", "accur')
    args = ["--metrics", "metrics/eval", "--predictions", "predictions", "--report", "reports/compare.md"]
    proc = run_in(project, "compare.py", *args)
    assert_refused(
        proc,
        project / "reports/compare.md",
        "error: metrics/eval/pytorch_fp32/sst2.json: not valid JSON (",
        rebuild("evaluate_baseline@pytorch_fp32"),
    )


@pytest.mark.parametrize(
    ("metrics", "cause"),
    [
        ('{"variant": "pytorch_fp32", "dataset": "sst2", "n": 40}', "no 'accuracy' (not an evaluate stage's metrics)"),
        ('{"variant": "pytorch_fp32", "dataset": "sst2", "accuracy": NaN}', "accuracy: nan is not a number in [0, 1]"),
    ],
    ids=["without", "nan"],
)
def test_compare_refuses_metrics_without_an_accuracy(project, metrics, cause):
    """Issue 36: a metrics file without its accuracy used to give a report with `+nan pt` and exit 0."""
    (project / "metrics/eval/pytorch_fp32").mkdir(parents=True)
    (project / "metrics/eval/pytorch_fp32/sst2.json").write_text(metrics)
    args = ["--metrics", "metrics/eval", "--predictions", "predictions", "--report", "reports/compare.md"]
    proc = run_in(project, "compare.py", *args)
    assert_refused(
        proc,
        project / "reports/compare.md",
        f"error: metrics/eval/pytorch_fp32/sst2.json: {cause}",
        rebuild("evaluate_baseline@pytorch_fp32"),
    )


def with_selection_splits(project: Path) -> Path:
    """The project with the prepared selection splits the search scores on (rows the tests' texts do not hold)."""
    held_out = pd.read_csv(REPO / "data/offline/sst2/validation.tsv", sep="\t", quoting=3).iloc[100:140]
    for dataset in ("sst2", "amazon"):
        held_out.rename(columns={"sentence": "text"}).to_parquet(project / f"data/prepared/{dataset}/selection.parquet")
    return project


def test_a_search_that_measures_no_trial_stops_naming_the_cause(project):
    """Issue 36: with a truncated fp32 export every trial failed and the stage ended green ("winner: none")."""
    with_selection_splits(project)
    corrupt(project / "models/onnx/base/model.onnx")
    proc = run_in(project, "search.py")
    assert_refused(
        proc,
        project / "reports/search",
        "error: search: none of the 8 trial(s) could be measured (6 failed, 2 for other causes): ",
        "models/onnx/base/model.onnx: not a valid ONNX model",
        logs_first=True,
    )
    assert not (project / "metrics/search.json").exists()


def test_a_search_excluding_a_part_the_graph_lacks_is_refused_before_the_first_trial(project):
    """Issue 36: `exclude_parts: [[layer.99]]` failed every trial and the stage ended green."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["search"].update(space={"per_channel": [False, True], "exclude_parts": [["head"], ["layer.99"]]})
    (with_selection_splits(project) / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_in(project, "search.py")
    assert_refused(
        proc,
        project / "reports/search",
        "error: search.space.exclude_parts: ['layer.99'] not in the graph the trial exclude_parts=[layer.99], "
        "per_channel=false quantizes (its parts: embeddings, layer.0, layer.1, head)",
    )
    assert not (project / "metrics/search/trials").exists()


def test_a_file_where_the_trial_cache_belongs_is_one_line(project):
    """Issue 36: `FileExistsError` in a traceback."""
    (with_selection_splits(project) / "metrics/search").mkdir(parents=True)
    (project / "metrics/search/trials").write_text("")
    proc = run_in(project, "search.py")
    assert_refused(
        proc, project / "reports/search", "error: metrics/search/trials: not a directory (the search's trial cache"
    )
    assert not (project / "metrics/search.json").exists()


def test_a_directory_where_a_cached_trial_belongs_is_one_line_before_any_trial_runs(project):
    """Issue 36: `IsADirectoryError` in a traceback, once the trial had run."""
    from quantpipe.config import load_params
    from quantpipe.search.space import candidate, planned_points

    search = load_params(with_selection_splits(project) / "params.yaml").search
    first = next(c for c in (candidate(search, point) for point in planned_points(search)) if c.variant).trial_id
    (project / f"metrics/search/trials/{first}.json").mkdir(parents=True)
    proc = run_in(project, "search.py")
    assert_refused(
        proc,
        project / "reports/search",
        f"error: metrics/search/trials/{first}.json: not a file (the trial's cached result belongs there)",
    )
    assert "new trial(s) to run" not in proc.stdout


def test_a_stage_sweeps_what_a_killed_run_of_it_left(project):
    """Issue 36: `kill -9` during a quantize stage left `models/quantized/.<variant>.tmp-<pid>` for good."""
    litter = project / f"models/quantized/.static_int8.tmp-{dead_pid()}"
    litter.mkdir(parents=True)
    out = project / "models/quantized/static_int8"
    proc = run_in(project, "quantize.py", "--name", "nope", "--out", str(out))
    assert_refused(proc, out, "error: variants.nope: ", logs_first=True)  # and no temporary sibling is left
    assert f"WARNING quantpipe.cli: {litter}: removed (a temporary output of a run that did not finish)" in proc.stderr


def test_the_sweep_stage_removes_litter_a_run_cache_restore_leaves(project):
    """Issue 36: the litter of a killed quantize stayed after the next `dvc repro` restored that stage from DVC's
    run-cache (the stage never started, so it never swept). The sweep stage, run on every repro, removes every
    temporary whose process is gone under the output directories, and keeps a running one's."""
    dead = dead_pid()
    litter = [
        project / f"models/quantized/.openvino_int8.tmp-{dead}",
        project / f"metrics/seq2seq/eval/pytorch_fp32/.outputs.json.tmp-{dead}",
        project / f"reports/.compare.md.tmp-{dead}",
    ]
    litter[0].mkdir(parents=True)
    for path in litter[1:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{")
    running = project / f"models/quantized/.dynamic_int8.tmp-{os.getpid()}"
    running.mkdir()
    proc = run_in(project, "sweep.py")
    assert proc.returncode == 0, proc.stderr
    assert not any(path.exists() for path in litter) and running.is_dir()
    for path in litter:
        assert f"WARNING quantpipe.cli: {path.relative_to(project)}: removed (a temporary" in proc.stderr
    assert "sweep: 3 temporaries removed" in proc.stdout


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "seq2seq/dvc.yaml", "search/dvc.yaml"])
def test_every_pipeline_sweeps_every_directory_it_writes_on_every_repro(pipeline):
    from quantpipe.cli import output_roots

    stages = [stage.get("do", stage) for stage in yaml.safe_load((REPO / pipeline).read_text())["stages"].values()]
    sweeps = [stage for stage in stages if stage["cmd"] == "python stages/sweep.py"]
    assert len(sweeps) == 1 and sweeps[0]["always_changed"] is True
    outs = [
        next(iter(out)) if isinstance(out, dict) else out
        for stage in stages
        for key in ("outs", "metrics", "plots")
        for out in stage.get(key, [])
    ]
    assert outs and all(Path(out).parts[0] in {str(root) for root in output_roots()} for out in outs)


def test_the_search_sweeps_a_trial_result_whose_write_did_not_finish(project):
    """Issue 36: a failed trial-cache write left a hidden `.t<id>.json.tmp-<pid>`."""
    litter = project / f"metrics/search/trials/.tabc.json.tmp-{dead_pid()}"
    litter.parent.mkdir(parents=True)
    litter.write_text('{"fingerprint": ')
    corrupt(with_selection_splits(project) / "models/onnx/base/model.onnx")  # the stage stops after its start
    proc = run_in(project, "search.py")
    assert_refused(proc, project / "reports/search", "error: search: none of the", logs_first=True)
    assert not litter.exists() and "removed (a trial result whose write did not finish)" in proc.stderr


def test_a_file_no_stage_writes_says_rebuild_it(tmp_path, monkeypatch):
    from quantpipe.io import read_json

    monkeypatch.chdir(tmp_path)  # no dvc.yaml here
    (tmp_path / "x.json").write_text("")
    with pytest.raises(QuantpipeError, match=r"^x\.json: empty; rebuild it$"):
        read_json("x.json")


def test_a_failure_in_the_serving_process_is_its_one_line(tiny_model, tmp_path, capfd, monkeypatch):
    """Not a QuantpipeError in the child: it comes back as the parent's one line, with no traceback."""
    from quantpipe.config.registry import get_kind
    from quantpipe.config.sections import EvaluateParams
    from quantpipe.serving import serve_in_child

    (tmp_path / "broken_kind.py").write_text(
        "from quantpipe.kinds.onnx import OnnxKind\n\n\n"
        "class Broken(OnnxKind):\n"
        "    def load(self, model_dir, variant, cfg):\n"
        "        raise ValueError('the runtime refused this model')\n\n\n"
        "KIND = Broken()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import broken_kind

    cfg = EvaluateParams(datasets=["sst2"], threads=1)
    variant = get_kind("onnx").params(kind="onnx")
    with pytest.raises(QuantpipeError) as raised:
        serve_in_child(broken_kind.KIND, variant, tiny_model, tiny_model, {"sst2": ["a text"]}, cfg)
    assert str(raised.value) == f"serving {tiny_model}: ValueError: the runtime refused this model"
    assert "Traceback" not in capfd.readouterr().err


def test_seq2seq_evaluate_names_a_corrupt_eval_split(project):
    """The writing stage is found in the pipeline one folder down, addressed as DVC does."""
    (project / "seq2seq").mkdir()
    shutil.copy2(REPO / "seq2seq/dvc.yaml", project / "seq2seq/dvc.yaml")
    pairs = project / "data/seq2seq"
    pairs.mkdir(parents=True)
    (pairs / "eval.parquet").write_bytes(b"PAR1 not a whole parquet file")
    out = project / "metrics/seq2seq/eval/pytorch_fp32"
    proc = run_in(project, "seq2seq_evaluate.py", "--name", "pytorch_fp32", "--out", str(out))
    assert_refused(
        proc, out, "data/seq2seq/eval.parquet: not a valid parquet file (", rebuild("seq2seq/dvc.yaml:seq2seq_data")
    )


def test_a_corrupt_seq2seq_model_config_is_one_line(tmp_path):
    from conftest import build_tiny_t5

    from quantpipe.seq2seq.runtime import TorchSeq2seq

    model_dir = build_tiny_t5(tmp_path / "t5")
    corrupt(model_dir / "config.json", "{ not json")
    with pytest.raises(QuantpipeError, match=r"config\.json: not valid JSON \(.*\); rebuild it"):
        TorchSeq2seq(model_dir, threads=1)


def test_seq2seq_quantize_names_a_truncated_export(project, tiny_onnx):
    """Issue 36: a truncated seq2seq ONNX file gave a `google.protobuf.message.DecodeError` traceback."""
    onnx_dir = project / "models/seq2seq/onnx"
    onnx_dir.mkdir(parents=True)
    for name in ("encoder_model.onnx", "decoder_model.onnx"):
        shutil.copy2(tiny_onnx / "model.onnx", onnx_dir / name)
    corrupt(onnx_dir / "decoder_model.onnx")
    out = project / "models/seq2seq/quantized/dynamic_int8"
    proc = run_in(project, "seq2seq_quantize.py", "--name", "dynamic_int8", "--out", str(out))
    assert_refused(proc, out, "error: models/seq2seq/onnx/decoder_model.onnx: not a valid ONNX model (")


def test_seq2seq_export_refuses_a_base_without_its_tokenizer(project):
    """Issue 36: it was exported into an ONNX directory without one, which the evaluate stage refused later."""
    from conftest import build_tiny_t5

    base = build_tiny_t5(project / "models/seq2seq/base")
    (base / "tokenizer.json").unlink()
    out = project / "models/seq2seq/onnx"
    proc = run_in(project, "seq2seq_export.py", "--out", str(out))
    assert_refused(proc, out, "error: models/seq2seq/base/tokenizer.json: tokenizer not found")


def test_seq2seq_export_refuses_pickled_weights(project):
    """Issue 36: a base whose weights are a `pytorch_model.bin` fell through to TensorFlow (`No module named
    'tensorflow'`); weights are read from safetensors only."""
    from conftest import build_tiny_t5
    from transformers import T5ForConditionalGeneration

    built = build_tiny_t5(project / "t5")
    base = project / "models/seq2seq/base"
    T5ForConditionalGeneration.from_pretrained(built).save_pretrained(base, safe_serialization=False)
    out = project / "models/seq2seq/onnx"
    proc = run_in(project, "seq2seq_export.py", "--out", str(out))
    assert_refused(
        proc, out, "error: models/seq2seq/base/pytorch_model.bin: weights are read from safetensors only (a .bin"
    )
