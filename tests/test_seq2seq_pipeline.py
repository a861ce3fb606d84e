"""The seq2seq pipeline (seq2seq/dvc.yaml) on a tiny random T5 and a few Amazon reviews, in a temporary git + DVC
copy of the repository, on a CPU faked without bf16 (QUANTPIPE_CPUINFO): every output, the bf16 variant skipped
with its reason, a no-op second repro, one variant flag re-runs only that variant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ENV, REPO, build_tiny_t5, ran_stages
from conftest import run as run_anywhere

pytestmark = pytest.mark.e2e
CPUINFO = "model name\t: Fake CPU\nflags\t\t: fpu sse sse2 avx2 avx512f avx512_vnni\n"  # VNNI, no bf16


def run(cwd: Path, *cmd: str, check: bool = True) -> object:
    """A command of the project on the fake CPU (written beside the project: its copies in tmp_path find it too)."""
    cpuinfo = cwd.parent / "cpuinfo"
    if not cpuinfo.is_file():
        cpuinfo.write_text(CPUINFO)
    return run_anywhere(cwd, *cmd, check=check, env={**ENV, "QUANTPIPE_CPUINFO": str(cpuinfo)})


def tiny_seq2seq(params: dict, model_dir: Path) -> dict:
    amazon = params["data"]["datasets"]["amazon"]
    amazon.update(eval_split="validation[:24]", selection_split="train[:40]")
    s2s = params["seq2seq"]
    s2s["model"].update(source="pretrained", pretrained=str(model_dir))
    s2s["model"]["train"].update(max_source_length=32)
    s2s["data"].update(train_split="train[:16]", eval_split="validation[:6]", eval_samples=6)
    s2s["variants"] = {
        "dynamic_int8": {"preset": "auto"},
        "int8_encoder": {"preset": "auto", "parts": ["encoder"]},
        "openvino_int8": {"kind": "openvino", "weights": "int8", "precision": "f32", "streams": 2},
        "pytorch_bf16": {"kind": "pytorch", "autocast": "bf16"},
    }
    s2s["evaluate"].update(
        max_new_tokens=4, latency_samples=2, batch_size=2, rounds=1, bootstrap_resamples=20, references=["pytorch_bf16"]
    )
    return params


@pytest.fixture(scope="module")
def s2s_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s2s") / "project"
    model = build_tiny_t5(tmp_path_factory.mktemp("t5") / "model")
    files = run_anywhere(REPO, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
    for name in filter(None, files):
        if name.endswith("dvc.lock") or name.startswith(("metrics/", "reports/")) or not (REPO / name).exists():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    params = tiny_seq2seq(yaml.safe_load((REPO / "params.yaml").read_text()), model)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny seq2seq project")
    out = run(root, "dvc", "repro", "seq2seq/dvc.yaml").stdout
    assert {"seq2seq/dvc.yaml:seq2seq_export", "seq2seq/dvc.yaml:seq2seq_compare"} <= ran_stages(out)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "seq2seq run")
    return root


def test_every_model_is_measured_and_reported(s2s_project):
    rows = json.loads((s2s_project / "metrics/seq2seq.json").read_text())
    copy = rows.pop("copy_source")  # doing nothing (`pairs: punctuation`): the sources copied, scored alike
    assert copy["words_kept"] == 1.0 and copy["punctuation_f1"] == 0.0 and 0 <= copy["quality"] <= 100
    assert all(0 <= row["punctuation_f1"] <= 1 and 0 <= row["words_kept"] <= 1 for row in rows.values())
    assert set(rows) == {
        "pytorch_fp32",
        "pytorch_fp32_no_cache",
        "onnx_fp32",
        "dynamic_int8",
        "int8_encoder",
        "openvino_int8",
        "pytorch_fp32_one_thread",
    }  # pytorch_bf16 skipped: this CPU has no bf16
    assert rows["pytorch_fp32_no_cache"]["identical_to_fp32"] == 1.0  # the cache changes speed, not outputs
    assert rows["pytorch_fp32_no_cache"]["call_speedup_no_cache_median"] == 1.0
    assert rows["onnx_fp32"]["identical_to_fp32"] == 1.0  # fp32 ONNX generates what PyTorch does
    for row in rows.values():
        assert 0 <= row["quality_ci_low"] <= row["quality"] <= row["quality_ci_high"] <= 100
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0 and row["call_speedup_min"] > 0
    assert rows["dynamic_int8"]["size_mb"] < rows["onnx_fp32"]["size_mb"]
    assert rows["int8_encoder"]["size_mb_decoder_model"] == rows["onnx_fp32"]["size_mb_decoder_model"]
    served = {name: (row["serving"], row["torch_imported"]) for name, row in rows.items()}
    assert served["onnx_fp32"] == ("onnx, 2 threads", False)  # the lean loop: no torch
    assert served["dynamic_int8"] == ("dynamic, 2 threads", False)
    assert served["openvino_int8"] == ("openvino, 2 streams x 1 thread", False)
    assert served["pytorch_fp32_one_thread"] == ("pytorch, 1 thread", True)
    assert rows["openvino_int8"]["size_mb"] < 0.5 * rows["onnx_fp32"]["size_mb"]  # int8 weights
    report = (s2s_project / "reports/seq2seq.md").read_text()
    assert (
        all(name in report for name in rows)
        and "chrF" in report
        and "**Answer: " in report
        and "a seeded shuffle" in report
        and "Doing nothing (each source copied as its output)" in report
        and "Skipped on this CPU: `pytorch_bf16` (bf16 autocast: this CPU has neither" in report
        and "pytorch_fp32_one_thread" in report.split("**Answer: ")[1].splitlines()[0]
        and "pytorch_bf16" not in report.split("**Answer: ")[1].splitlines()[0]
        and report.startswith("# quantpipe seq2seq")
    )
    skipped = json.loads((s2s_project / "metrics/seq2seq/eval/pytorch_bf16/metrics.json").read_text())
    assert skipped["skipped"].startswith("bf16 autocast") and "latency" not in skipped
    resolved = json.loads((s2s_project / "models/seq2seq/quantized/dynamic_int8/quantpipe_variant.json").read_text())
    assert resolved["resolved"]["quantized_ops"]["encoder_model.onnx"] > 0


def test_a_second_repro_runs_nothing_and_a_flag_reruns_only_its_variant(s2s_project, tmp_path):
    always = {"environment", "seq2seq/dvc.yaml:seq2seq_sweep"}
    assert ran_stages(run(s2s_project, "dvc", "repro", "seq2seq/dvc.yaml").stdout) == always
    root = tmp_path / "project"
    shutil.copytree(s2s_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seq2seq"]["variants"]["dynamic_int8"]["per_channel"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = ran_stages(run(root, "dvc", "repro", "seq2seq/dvc.yaml").stdout)
    assert ran == always | {
        "seq2seq/dvc.yaml:seq2seq_quantize@dynamic_int8",
        "seq2seq/dvc.yaml:seq2seq_evaluate@dynamic_int8",
        "seq2seq/dvc.yaml:seq2seq_compare",
    }
    diff = run(root, "dvc", "metrics", "diff", "--json").stdout
    assert "metrics/seq2seq.json" in diff
    params["seq2seq"]["evaluate"]["budget"] = 0.5  # read by the report alone: no model is measured again
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = ran_stages(run(root, "dvc", "repro", "seq2seq/dvc.yaml").stdout)
    assert ran == always | {"seq2seq/dvc.yaml:seq2seq_compare"}


def test_a_classification_model_is_refused_in_one_line(s2s_project, tiny_model, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(s2s_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seq2seq"]["model"]["pretrained"] = str(tiny_model)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(root, "python", "stages/seq2seq_model.py", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: seq2seq.model.pretrained: '{tiny_model}': not a seq2seq model (bert,")


STAGES = {  # the command line of each seq2seq stage, as seq2seq/dvc.yaml runs it
    "export": ["stages/seq2seq_export.py"],
    "quantize_int8": [
        "stages/seq2seq_quantize.py",
        "--name",
        "dynamic_int8",
        "--out",
        "models/seq2seq/quantized/dynamic_int8",
    ],
    "quantize_openvino": [
        "stages/seq2seq_quantize.py",
        "--name",
        "openvino_int8",
        "--out",
        "models/seq2seq/quantized/openvino_int8",
    ],
    "evaluate_fp32": [
        "stages/seq2seq_evaluate.py",
        "--name",
        "pytorch_fp32",
        "--out",
        "metrics/seq2seq/eval/pytorch_fp32",
    ],
    "evaluate_onnx": ["stages/seq2seq_evaluate.py", "--name", "onnx_fp32", "--out", "metrics/seq2seq/eval/onnx_fp32"],
    "evaluate_int8": [
        "stages/seq2seq_evaluate.py",
        "--name",
        "dynamic_int8",
        "--out",
        "metrics/seq2seq/eval/dynamic_int8",
    ],
    "evaluate_openvino": [
        "stages/seq2seq_evaluate.py",
        "--name",
        "openvino_int8",
        "--out",
        "metrics/seq2seq/eval/openvino_int8",
    ],
    "compare": ["stages/seq2seq_compare.py"],
}


@pytest.mark.parametrize(
    ("stage", "artifact"),
    [
        ("export", "models/seq2seq/base/model.safetensors"),
        ("export", "models/seq2seq/base/config.json"),
        ("quantize_int8", "models/seq2seq/onnx/encoder_model.onnx"),
        ("quantize_openvino", "models/seq2seq/onnx/decoder_model.onnx"),
        ("evaluate_fp32", "models/seq2seq/base/model.safetensors"),
        ("evaluate_fp32", "models/seq2seq/base/generation_config.json"),
        ("evaluate_onnx", "models/seq2seq/onnx/tokenizer.json"),
        ("evaluate_int8", "models/seq2seq/quantized/dynamic_int8/decoder_with_past_model.onnx"),
        ("evaluate_int8", "models/seq2seq/quantized/dynamic_int8/quantpipe_variant.json"),
        ("evaluate_openvino", "models/seq2seq/quantized/openvino_int8/decoder_model.xml"),
        ("evaluate_openvino", "models/seq2seq/quantized/openvino_int8/encoder_model.bin"),
        ("compare", "metrics/seq2seq/eval/dynamic_int8/metrics.json"),
        ("compare", "metrics/seq2seq/eval/onnx_fp32/outputs.json"),
    ],
)
def test_a_corrupt_artifact_of_a_seq2seq_stage_is_one_line_naming_it(s2s_project, tmp_path, stage, artifact):
    """Issue 36: every artifact a seq2seq stage reads is checked on load, as the classification stages' are: a
    truncated file is one `error:` line naming it, no traceback."""
    root = tmp_path / "project"
    shutil.copytree(s2s_project, root, symlinks=True)
    path = root / artifact
    assert path.is_file(), sorted(p.name for p in path.parent.iterdir())
    path.unlink()  # (the DVC cache's file is linked here: replace the link, do not write through it)
    data = (s2s_project / artifact).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    proc = run(root, "python", *STAGES[stage], check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    # the file, or the model directory whose loader read it (ONNX Runtime and OpenVINO load a directory's files)
    named = (f"error: {artifact}: ", f"error: {Path(artifact).parent}: not a valid ")
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith(named), proc.stderr
