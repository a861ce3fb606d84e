"""Variant kinds (`quantpipe.kinds`): every buildable kind builds and predicts like the fp32 model; a kind
registered from outside (this module) goes through params, evaluate, side-by-side timing and the report with no
other edit; a bad kind, a key of another kind and a missing optional dependency each stop at one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ENV, REPO, run
from pydantic import Field
from test_base_model import encoder_only, toy_set
from test_base_model import params as finetune_params

from quantpipe.config import Params, load_params
from quantpipe.config.constants import BASELINES, PRESETS
from quantpipe.config.registry import KINDS, get_kind
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE
from quantpipe.inference import Tokenizer, predict
from quantpipe.io import VARIANT_FILE, read_json, write_json
from quantpipe.kinds import pipeline_models
from quantpipe.kinds.base import BuildInputs, Kind, copy_tokenizer
from quantpipe.kinds.onnx import load_onnx

# --- a kind defined outside the package: an fp32 copy of the ONNX export, run with ONNX Runtime's basic
# graph optimizations whatever `evaluate.graph_optimization` says. KINDS maps a kind to a module exposing KIND.


class CopyParams(VariantParams):
    """An fp32 copy of the ONNX export, its session graph optimization level forced."""

    kind: Literal["copy_fp32"] = Field(description="`copy_fp32`: the fp32 export, copied")
    graph_optimization: Literal["disable", "basic"] = Field(
        "basic", description="ONNX Runtime graph optimization level, in place of evaluate.graph_optimization"
    )


class CopyKind(Kind):
    name = "copy_fp32"
    params = CopyParams

    def build(self, name: str, variant: CopyParams, inputs: BuildInputs, out_dir: Path) -> dict:
        shutil.copy2(Path(inputs.onnx) / MODEL_FILE, Path(out_dir) / MODEL_FILE)
        copy_tokenizer(inputs.onnx, out_dir)
        return {"graph_optimization": variant.graph_optimization}

    def load(self, model_dir: Path, variant: CopyParams, cfg: EvaluateParams):
        return load_onnx(model_dir, variant, cfg.model_copy(update={"graph_optimization": variant.graph_optimization}))


KIND = CopyKind()

# a kind whose optional dependency is missing; written to a module of its own (KINDS names one KIND per module)
NEEDS_MODULE = '''
from typing import Literal

from pydantic import Field

from quantpipe.config.sections import VariantParams
from quantpipe.kinds.base import Kind


class NeedsParams(VariantParams):
    """A kind that needs a module nobody has."""

    kind: Literal["needs_xyz"] = Field(description="needs no_such_module_xyz")


class NeedsKind(Kind):
    name = "needs_xyz"
    params = NeedsParams
    requires = ("no_such_module_xyz",)
    extra = "xyz"


KIND = NeedsKind()
'''

BUILDABLE = ["dynamic", "static", "torch_dynamic", "openvino", "pytorch"]
VARIANTS = {  # name -> raw params, one per buildable kind (kind: its name)
    "dynamic": {"kind": "dynamic", "operators": ["MatMul"]},
    "static": {"kind": "static", "calibration": "mm", "per_channel": True, "operators": ["MatMul"]},
    "torch_dynamic": {"kind": "torch_dynamic"},
    "openvino": {"kind": "openvino", "calibration": "mm", "smooth_quant_alpha": -1},
    "pytorch": {"kind": "pytorch"},
}


@pytest.fixture
def copy_kind(monkeypatch):
    """`copy_fp32` registered, as a project would register a kind of its own: one line in KINDS."""
    monkeypatch.setitem(KINDS, "copy_fp32", CopyKind.__module__)
    assert get_kind("copy_fp32") is KIND
    return KIND


def raw_params(variants: dict, **compare) -> dict:
    """The shipped params with only `variants` (and the calibration `mm` the static one names)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["calibrations"] = {"mm": {"num_samples": 16, "max_length": 16}}
    raw["variants"] = variants
    raw["sensitivity"]["variant"] = next(n for n, v in variants.items() if v["kind"] in ("static", "dynamic"))
    raw["compare"] = {"baseline": "pytorch_fp32", **compare}
    raw.pop("search")  # it names the shipped calibrations
    return raw


SENTENCES = [  # the toy set's words in other sentences
    "the film was good",
    "the movie is great fun",
    "i love this book",
    "very good acting",
    "the story works",
    "the plot was awful",
    "boring and bad acting",
    "i hate this movie",
    "it broke , very bad",
    "the book was boring",
]


@pytest.fixture(scope="module")
def sentences() -> pd.DataFrame:
    frame = toy_set()
    return pd.concat([frame, pd.DataFrame({"text": SENTENCES, "label": [1] * 5 + [0] * 5})], ignore_index=True)


@pytest.fixture(scope="module")
def two_class(tiny_model, sentences, tmp_path_factory) -> dict[str, Path]:
    """The pipeline's inputs on the tiny BERT: `base` (fine-tuned on a separable toy set, so that it predicts
    both classes with clear margins), its ONNX export, minmax ranges `calibration/mm` and
    `prepared/sst2/train.parquet`."""
    from quantpipe.base_model import build_base_model
    from quantpipe.calibration import calibrate
    from quantpipe.config.sections import CalibrationParams
    from quantpipe.export import export_onnx

    root = tmp_path_factory.mktemp("kinds")
    encoder = encoder_only(tiny_model, root / "encoder")
    build_base_model(finetune_params().model_copy(update={"encoder": str(encoder)}), toy_set(), root / "base")
    (root / "onnx").mkdir()
    export_onnx(root / "base", root / "onnx")
    (root / "calibration" / "mm").mkdir(parents=True)
    cal = CalibrationParams(num_samples=len(sentences), max_length=16)
    calibrate(root / "onnx", sentences["text"], cal, root / "calibration/mm")
    (root / "prepared" / "sst2").mkdir(parents=True)
    sentences.to_parquet(root / "prepared" / "sst2" / "train.parquet")
    return {name: root / name for name in ("base", "onnx", "calibration", "prepared")}


def cfg(**update) -> EvaluateParams:
    return EvaluateParams(
        datasets=["sst2"], batch_size=8, max_length=64, threads=1, latency_samples=3, bootstrap_resamples=50, **update
    )


def build(name: str, variant: VariantParams, params: Params, dirs: dict, quantized: Path) -> Path:
    """What the quantize stage does for one variant (without its atomic directory)."""
    kind = get_kind(variant.kind)
    out = quantized / name
    out.mkdir(parents=True)
    inputs = BuildInputs(params, dirs["base"], dirs["onnx"], dirs["calibration"], dirs["prepared"])
    resolved = kind.build(name, variant, inputs, out)
    write_json(out / VARIANT_FILE, {"kind": kind.name, "params": variant.model_dump(), "resolved": resolved})
    return out


def fp32_labels(dirs: dict, texts: pd.DataFrame) -> np.ndarray:
    classifier = get_kind("pytorch").load(dirs["base"], get_kind("pytorch").params(kind="pytorch"), cfg())
    return predict(classifier, Tokenizer(dirs["base"]), texts["text"].tolist(), 8, 64).labels


def test_every_buildable_kind_is_registered():
    buildable = [k for k in KINDS if not get_kind(k).baseline]
    assert set(BUILDABLE) <= set(buildable)
    assert {get_kind(k).name for k in KINDS} == set(KINDS)  # a kind's name is its registry key
    # the baselines' kinds: onnx only serves its baseline; pytorch serves pytorch_fp32 and variants (bf16, compile)
    assert {k for k in KINDS if get_kind(k).baseline} == {"onnx"} and set(BASELINES.values()) == {"onnx", "pytorch"}


@pytest.mark.parametrize("kind_name", BUILDABLE)
def test_each_kind_builds_and_predicts_like_the_fp32_model(kind_name, two_class, sentences, tmp_path):
    params = Params.model_validate(raw_params(VARIANTS))
    variant = params.variants[kind_name]
    kind = get_kind(kind_name)
    assert isinstance(variant, kind.params) and variant.kind == kind_name
    kind.check_available(kind_name)
    out = build(kind_name, variant, params, two_class, tmp_path / "quantized")
    assert kind.size_bytes(out) > 0
    resolved = read_json(out / VARIANT_FILE)["resolved"]
    if kind_name == "torch_dynamic":
        import torch

        assert set(resolved) == {"engine"} and resolved["engine"] in torch.backends.quantized.supported_engines
    elif kind_name == "openvino":  # what the CPU plugin computes in, read back (no hint: its default)
        assert resolved["inference_precision"] in ("f32", "bf16") and resolved["streams"] == 1
    elif kind_name == "pytorch":
        assert resolved == {"autocast": "none", "compile": False}
    else:
        assert set(resolved) == {"preset"} and resolved["preset"] in PRESETS  # `auto` resolved for this CPU
    expected = fp32_labels(two_class, sentences)
    assert 0 < expected.sum() < len(expected)  # both classes: agreement means something
    classifier = kind.load(out, variant, cfg())
    got = predict(classifier, Tokenizer(two_class["base"]), sentences["text"].tolist(), 8, 64).labels
    agreement = float((got == expected).mean())
    assert agreement >= 0.8, f"{kind_name}: {agreement:.0%} of the fp32 model's labels"


def test_openvino_options_that_do_not_apply_or_name_no_node_are_one_line(two_class, tmp_path):
    def params_error(variant: dict) -> str:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw_params({"dyn": VARIANTS["dynamic"], "ov": variant})))
        with pytest.raises(QuantpipeError) as info:
            load_params(path)
        return str(info.value)

    fp32_calibrated = params_error({"kind": "openvino", "weights": "fp32", "calibration": "mm"})
    assert fp32_calibrated.endswith(
        "variants.ov: calibration, smooth_quant_alpha and ignored_* apply to weights: int8 only"
    )
    assert "variants.ov: an int8 openvino variant needs `calibration" in params_error({"kind": "openvino"})
    variant = {"kind": "openvino", "calibration": "mm", "ignored_nodes": ["no/such/node"]}
    params = Params.model_validate(raw_params({"dyn": VARIANTS["dynamic"], "ov": variant}))
    with pytest.raises(QuantpipeError) as info:
        build("ov", params.variants["ov"], params, two_class, tmp_path / "quantized")
    assert str(info.value).startswith("variants.ov.ignored_*: NNCF: ") and "no/such/node" in str(info.value)
    assert "\n" not in str(info.value)


# --- a kind registered from outside the package


def test_a_registered_kind_is_validated_by_its_own_params(copy_kind, tmp_path):
    raw = raw_params({"dyn": VARIANTS["dynamic"], "cp": {"kind": "copy_fp32"}})
    params = Params.model_validate(raw)
    assert isinstance(params.variants["cp"], CopyParams) and params.variants["cp"].graph_optimization == "basic"
    raw["variants"]["cp"]["calibration"] = "mm"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(QuantpipeError) as info:
        load_params(path)
    assert (
        str(info.value)
        == f"{path}: variants.cp.calibration: unknown key (known: kind, model, max_length, truncation, streams, threads, graph_optimization)"
    )
    raw["variants"]["cp"] = {"kind": "copy_fp33"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(QuantpipeError, match=r"variants\.cp\.kind: unknown 'copy_fp33' \(variant kinds: .*copy_fp32"):
        load_params(path)


def test_an_unregistered_kind_is_unknown(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params({"dyn": VARIANTS["dynamic"], "cp": {"kind": "copy_fp32"}})))
    with pytest.raises(QuantpipeError, match=r"variants\.cp\.kind: unknown 'copy_fp32'"):
        load_params(path)


@pytest.fixture(scope="module")
def registered_run(two_class, texts, tmp_path_factory):
    """The pipeline with `copy_fp32` registered: build, evaluate (each model served in a child process, where
    this module is imported from sys.path), time side by side; what the evaluate and side_by_side stages do."""
    from quantpipe.evaluation import evaluate_model
    from quantpipe.side_by_side import time_side_by_side

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(KINDS, "copy_fp32", CopyKind.__module__)
        params = Params.model_validate(
            raw_params({"dyn": VARIANTS["dynamic"], "cp": {"kind": "copy_fp32"}}, references=["cp"])
        )
        quantized = tmp_path_factory.mktemp("registered") / "quantized"
        for name, variant in params.variants.items():
            build(name, variant, params, two_class, quantized)
        models = pipeline_models(params, two_class["base"], two_class["onnx"], quantized)
        frames = {"sst2": texts}
        metrics = {
            name: evaluate_model(name, kind, variant, path, two_class["base"], frames, cfg())["sst2"]
            for name, (kind, variant, path) in models.items()
        }
        classifiers = {name: kind.load(path, variant, cfg()) for name, (kind, variant, path) in models.items()}
        timed = time_side_by_side(classifiers, Tokenizer(two_class["base"]), texts["text"].tolist(), cfg(), 2)
    side_by_side = {
        "rounds": 2,
        "max_samples": None,
        "batch_size": 8,
        "threads": 1,
        "datasets": {"sst2": {"examples": len(texts), "models": timed}},
    }
    return {"params": params, "models": models, "metrics": metrics, "timed": timed, "side_by_side": side_by_side}


def test_a_registered_kind_is_built_and_evaluated(registered_run, two_class, texts):
    models, metrics = registered_run["models"], registered_run["metrics"]
    assert list(models) == [*BASELINES, "dyn", "cp"]
    kind, variant, path = models["cp"]
    assert kind is KIND and isinstance(variant, CopyParams) and path.name == "cp"
    cp = metrics["cp"]
    assert cp["variant"] == "cp" and cp["kind"] == "copy_fp32" and cp["n"] == len(texts)
    assert cp["resolved"] == {"graph_optimization": "basic"}  # read back from the build's variant file
    assert cp["torch_imported"] is False  # an ONNX Runtime kind, served without torch
    assert cp["model_size_mb"] == pytest.approx((two_class["onnx"] / MODEL_FILE).stat().st_size / 1e6)
    assert cp["accuracy"] == metrics["onnx_fp32"]["accuracy"]  # the same graph
    assert cp["latency"]["samples"] == 3 and cp["peak_rss_mb"] > 0


def test_a_registered_kind_is_timed_side_by_side(registered_run):
    timed = registered_run["timed"]
    assert set(timed) == {*BASELINES, "dyn", "cp"}
    assert timed["cp"]["labels"].tolist() == timed["onnx_fp32"]["labels"].tolist()
    assert len(timed["cp"]["samples_per_second"]) == 2 and min(timed["cp"]["samples_per_second"]) > 0


def test_a_registered_kind_is_in_the_report(registered_run):
    from quantpipe.analysis import against_references, comparison_table, summary_metrics
    from quantpipe.rendering import markdown_report

    side_by_side = registered_run["side_by_side"]
    table = comparison_table(pd.DataFrame(registered_run["metrics"].values()), "pytorch_fp32", 1.0, side_by_side)
    row = table.set_index("variant").loc["cp"]
    assert row["kind"] == "copy_fp32" and row["size_ratio"] > 0 and row["speed_ratio"] > 0
    report = markdown_report(table, "pytorch_fp32", 1.0, side_by_side)
    line = next(line for line in report.splitlines() if line.startswith(("| cp ", "| **cp** ")))
    assert "| copy_fp32 " in line
    references = against_references(table, side_by_side, ["cp"])
    summary = summary_metrics(table, references)
    assert summary["sst2"]["cp"]["speed_ratio"] > 0
    assert set(references) <= {"sst2"}  # left out only when the best model within budget is `cp` itself


# --- bad input through the quantize stage: one line, nothing written


def quantize(project: Path, params: Path, name: str, *, python_path: Path | None = None, register: str = ""):
    """`stages/quantize.py` in the project copy; `register` (`kind=module`) adds a kind to KINDS first, the way a
    project's own code would, then runs the stage as its script."""
    args = ["--params", str(params), "--name", name, "--out", f"models/quantized/{name}"]
    env = dict(ENV)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(python_path), env.get("PYTHONPATH")]))
    if register:
        kind, module = register.split("=")
        code = (
            "import runpy, sys; from quantpipe.config.registry import KINDS; "
            f"KINDS[{kind!r}] = {module!r}; sys.argv = ['stages/quantize.py', *sys.argv[1:]]; "
            "runpy.run_path('stages/quantize.py', run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "stages/quantize.py", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)


def assert_stopped(proc: subprocess.CompletedProcess, project: Path, name: str, message: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {message}"], proc.stderr
    assert not (project / "models" / "quantized" / name).exists()
    assert not list((project / "models" / "quantized").glob(f".{name}.tmp-*"))
    assert run(project, "git", "status", "--porcelain").stdout == ""


def project_params(project: Path, tmp_path: Path, change) -> Path:
    """The project's params with `change` applied, written outside the project (its git status stays clean)."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    change(raw)
    path = tmp_path / "bad_params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_quantize_refuses_an_unknown_kind(project, tmp_path):
    path = project_params(project, tmp_path, lambda p: p["variants"].update(weird_int8={"kind": "weird"}))
    kinds = ", ".join(k for k in KINDS if not get_kind(k).baseline)
    proc = quantize(project, path, "weird_int8")
    assert_stopped(
        proc, project, "weird_int8", f"{path}: variants.weird_int8.kind: unknown 'weird' (variant kinds: {kinds})"
    )


def test_quantize_refuses_a_key_of_another_kind(project, tmp_path):
    variant = {"kind": "torch_dynamic", "calibration": "minmax_50"}  # calibration: a static variant's key
    path = project_params(project, tmp_path, lambda p: p["variants"].update(td_calibrated=variant))
    proc = quantize(project, path, "td_calibrated")
    assert_stopped(
        proc,
        project,
        "td_calibrated",
        f"{path}: variants.td_calibrated.calibration: unknown key (known: kind, model, max_length, truncation, streams, threads, engine, api)",
    )


def test_a_missing_optional_dependency_names_the_variant(project, tmp_path, monkeypatch):
    (tmp_path / "needs_xyz_kind.py").write_text(NEEDS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(KINDS, "needs_xyz", "needs_xyz_kind")
    message = "variants.xyz_int8.kind: needs_xyz needs no_such_module_xyz, not installed (pip install 'quantpipe[xyz]')"
    with pytest.raises(QuantpipeError) as info:
        get_kind("needs_xyz").check_available("xyz_int8")
    assert str(info.value) == message
    get_kind("dynamic").check_available("dynamic_int8")  # nothing missing: no error
    # the quantize stage checks it before it writes anything
    path = project_params(project, tmp_path, lambda p: p["variants"].update(xyz_int8={"kind": "needs_xyz"}))
    proc = quantize(project, path, "xyz_int8", python_path=tmp_path, register="needs_xyz=needs_xyz_kind")
    assert_stopped(proc, project, "xyz_int8", message)


# --- engine defaults, bf16 and concurrency (streams)

AVX2_ONLY = {"flags": {"avx2": True, "avx512_bf16": False, "amx_bf16": False}}
WITH_BF16 = {"flags": {"avx2": True, "avx512_bf16": True, "amx_bf16": False}}
BF16_VARIANTS = {
    "pytorch": {"kind": "pytorch", "autocast": "bf16"},
    "openvino": {"kind": "openvino", "weights": "fp32", "inference_precision": "bf16"},
}


@pytest.mark.parametrize("kind_name", sorted(BF16_VARIANTS))
def test_a_bf16_variant_is_skipped_with_its_reason_on_a_cpu_without_bf16(kind_name):
    variant = get_kind(kind_name).params.model_validate(BF16_VARIANTS[kind_name])
    reason = get_kind(kind_name).skip_reason(variant, AVX2_ONLY)
    assert "neither AVX512_BF16 nor AMX-BF16" in reason and "\n" not in reason
    assert get_kind(kind_name).skip_reason(variant, WITH_BF16) is None
    fp32 = get_kind(kind_name).params.model_validate(
        {**BF16_VARIANTS[kind_name], "autocast": "none"}
        if kind_name == "pytorch"
        else {**BF16_VARIANTS[kind_name], "inference_precision": "default"}
    )
    assert get_kind(kind_name).skip_reason(fp32, AVX2_ONLY) is None  # OpenVINO's default: no hint, never skipped


def test_the_openvino_default_sets_no_precision_hint_and_a_forced_one_says_so():
    from quantpipe.kinds.openvino import OpenVinoParams, compile_config

    default = compile_config(OpenVinoParams(kind="openvino", weights="fp32"), threads=2)
    assert default == {"INFERENCE_NUM_THREADS": 2}  # what `core.compile_model(model, "CPU")` gets, threads aside
    forced = compile_config(OpenVinoParams(kind="openvino", weights="fp32", inference_precision="f32", streams=2), 2)
    assert forced == {
        "INFERENCE_NUM_THREADS": 2,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": 2,
    }


def test_the_quantize_stage_records_a_skipped_variant_on_a_fake_cpu_without_bf16(two_class, tmp_path):
    """The stage as dvc.yaml runs it, on a CPU faked through QUANTPIPE_CPUINFO: nothing built, the reason kept."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Fake CPU\nflags\t\t: fpu sse avx2\n")
    raw = raw_params({"dyn": VARIANTS["dynamic"], "bf": BF16_VARIANTS["pytorch"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "quantized" / "bf"
    args = [f"--{k}={v}" for k, v in two_class.items()] + [
        "--name=bf",
        f"--out={out}",
        f"--params={tmp_path / 'params.yaml'}",
    ]
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/quantize.py"), *args],
        env={**ENV, "QUANTPIPE_CPUINFO": str(cpuinfo)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [VARIANT_FILE]
    from quantpipe.kinds.base import skipped_reason

    assert "bf16 autocast" in skipped_reason(out) and "skipped on this CPU" in proc.stdout


@pytest.mark.parametrize(
    "kind_name,raw",
    [
        ("pytorch", {"kind": "pytorch", "streams": 2}),
        ("pytorch", {"kind": "pytorch", "autocast": "bf16"}),  # runs where bf16 is emulated too (the test's CPU)
        ("dynamic", {**VARIANTS["dynamic"], "streams": 2}),
        ("openvino", {**VARIANTS["openvino"], "streams": 2}),
        ("openvino", {"kind": "openvino", "weights": "fp32", "streams": 2, "threads": 2}),
    ],
)
def test_each_option_builds_and_concurrency_predicts_like_one_stream(kind_name, raw, two_class, sentences, tmp_path):
    params = Params.model_validate(
        raw_params({"dyn": VARIANTS["dynamic"], "v": raw} if kind_name != "dynamic" else {"v": raw})
    )
    variant = params.variants["v"]
    out = build("v", variant, params, two_class, tmp_path / "quantized")
    texts = sentences["text"].tolist() * 3
    one = predict(
        get_kind(kind_name).load(out, variant.model_copy(update={"streams": 1}), cfg()), Tokenizer(out), texts, 4, 64
    )
    runtime = get_kind(kind_name).load(out, variant, cfg())
    many = predict(runtime, Tokenizer(out), texts, 4, 64)
    assert np.array_equal(one.labels, many.labels)
    if variant.streams > 1:
        from quantpipe.inference import Concurrent

        assert isinstance(runtime, Concurrent) and runtime.streams == 2
    if kind_name == "openvino":
        assert read_json(out / VARIANT_FILE)["resolved"]["streams"] == variant.streams


def test_torch_compile_builds_and_predicts_like_eager(two_class, sentences, tmp_path):
    params = Params.model_validate(raw_params({"dyn": VARIANTS["dynamic"], "c": {"kind": "pytorch", "compile": True}}))
    out = build("c", params.variants["c"], params, two_class, tmp_path / "quantized")
    assert read_json(out / VARIANT_FILE)["resolved"] == {"autocast": "none", "compile": True}
    got = predict(
        get_kind("pytorch").load(out, params.variants["c"], cfg()), Tokenizer(out), sentences["text"].tolist(), 8, 64
    )
    assert np.array_equal(got.labels, fp32_labels(two_class, sentences))


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({"kind": "openvino", "weights": "fp32", "streams": 0}, "variants.v.streams: Input should be greater than 0"),
        ({"kind": "openvino", "weights": "fp32", "inference_precision": "fp16"}, "variants.v.inference_precision:"),
        ({"kind": "pytorch", "autocast": "fp16"}, "variants.v.autocast:"),
        ({"kind": "dynamic", "threads": 0}, "variants.v.threads: Input should be greater than 0"),
    ],
)
def test_bad_concurrency_and_precision_options_are_one_line(raw, expected, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params({"dyn": VARIANTS["dynamic"], "v": raw})))
    with pytest.raises(QuantpipeError) as info:
        load_params(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_model_torch_compile_cannot_compile_stops_the_build_in_one_line(two_class, tmp_path, monkeypatch):
    import torch

    def broken_compile(model, **options):
        def run(**inputs):
            raise RuntimeError("backend='inductor' raised:\nCppCompileError: no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    params = Params.model_validate(raw_params({"dyn": VARIANTS["dynamic"], "c": {"kind": "pytorch", "compile": True}}))
    with pytest.raises(QuantpipeError) as info:
        build("c", params.variants["c"], params, two_class, tmp_path / "quantized")
    assert str(info.value) == "variants.c.compile: torch.compile failed: backend='inductor' raised:"
