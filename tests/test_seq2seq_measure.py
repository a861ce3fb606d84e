"""Seq2seq measurement (`quantpipe.serving`'s generate task, `quantpipe.side_by_side`, `quantpipe.seq2seq.compare`)
on a tiny random T5 built in code, with the packaged MiniLM's BERT tokenizer (no download): one model per fresh
process (PyTorch, and fp32 ONNX served by the lean loop without torch), every model side by side in one process,
quality against the references and the fp32 outputs, bad inputs."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEQ2SEQ_TEXTS, build_tiny_t5

from quantpipe.config.registry import get_kind
from quantpipe.config.seq2seq import GenerateServing, Seq2seqEvaluateParams
from quantpipe.errors import QuantpipeError
from quantpipe.memory import peak_rss_bytes
from quantpipe.seq2seq.compare import quality_by_model, ratios_to_baseline
from quantpipe.seq2seq.export import DECODER_FILE, ENCODER_FILE, WITH_PAST_FILE, export_seq2seq
from quantpipe.seq2seq.generation import generate_texts
from quantpipe.serving import serve_generate_in_child
from quantpipe.side_by_side import time_generate_side_by_side

MAX_NEW_TOKENS = 6
LATENCY_SAMPLES = 3
CFG = Seq2seqEvaluateParams(max_new_tokens=MAX_NEW_TOKENS, latency_samples=LATENCY_SAMPLES, batch_size=2, threads=1)
PYTORCH, ONNX = get_kind("pytorch"), get_kind("onnx")


def fp32(kind, **overrides):
    """A baseline's generate params (`quantpipe.kinds.seq2seq_models`)."""
    return kind.generate_params(kind=kind.name, **overrides)


def served(kind, model_dir: Path, **overrides):
    return kind.load_generate(model_dir, fp32(kind, **overrides), GenerateServing(1))


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "model")


@pytest.fixture(scope="module")
def t5_onnx(t5_dir, tmp_path_factory) -> Path:
    return export_seq2seq(t5_dir, tmp_path_factory.mktemp("t5_onnx") / "onnx", with_past=True)


@pytest.fixture(scope="module")
def measured(t5_dir, t5_onnx) -> dict[str, dict]:
    """Each model measured in its own fresh process."""
    return {
        kind.name: serve_generate_in_child(kind, fp32(kind), model_dir, SEQ2SEQ_TEXTS, CFG)
        for kind, model_dir in ((PYTORCH, t5_dir), (ONNX, t5_onnx))
    }


@pytest.mark.parametrize("name", ["pytorch", "onnx"])
def test_child_reports_every_figure(measured, name):
    """The ONNX model is served by the lean loop: neither torch nor transformers is imported in its process."""
    result = measured[name]
    assert result["served_by"] == {"kind": name, "threads": 1, **({"streams": 1} if name == "onnx" else {})}
    assert len(result["outputs"]) == len(SEQ2SEQ_TEXTS) and all(isinstance(text, str) for text in result["outputs"])
    assert all(1 <= count <= MAX_NEW_TOKENS for count in result["new_tokens"])
    assert len(result["latencies_s"]) == LATENCY_SAMPLES and all(s > 0 for s in result["latencies_s"])
    memory = result["memory"]
    assert memory["torch_imported"] is memory["transformers_imported"] is (name == "pytorch")
    assert 0 < memory["rss_start_mb"] < memory["rss_after_load_mb"] <= memory["peak_rss_serving_mb"]
    assert memory["peak_rss_serving_mb"] <= memory["peak_rss_mb"]
    assert abs(memory["one_call_increment_mb"]) < 20 and abs(memory["first_call_increment_mb"]) < 100
    assert memory["load_seconds"] > 0
    files = {"pytorch": ["model.safetensors"], "onnx": [DECODER_FILE, WITH_PAST_FILE, ENCODER_FILE]}[name]
    assert list(result["files_mb"]) == files and all(mb > 0.1 for mb in result["files_mb"].values())


def test_peak_is_the_childs_own():
    """A child spawned by a process holding 400 MB more reports its own peak: Linux's ru_maxrss would be the
    parent's (carried over exec), VmHWM is not."""
    held = bytearray(400 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page: resident
    code = "from quantpipe.memory import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 0 < child < parent - len(held) // 2 and peak_rss_bytes() >= len(held)


def test_quality_against_references_and_fp32(measured):
    outputs = {name: result["outputs"] for name, result in measured.items()}
    quality = quality_by_model(SEQ2SEQ_TEXTS, outputs, "pytorch", "chrf", n_resamples=100, seed=0)
    assert quality["pytorch"]["identical_to_reference"] == 1.0
    assert quality["onnx"]["identical_to_reference"] == 1.0  # fp32 ONNX decodes what PyTorch decodes
    for scores in quality.values():
        low, high = scores["score_ci"]
        assert 0 <= low <= scores["score"] <= high <= 100 and scores["samples"] == len(SEQ2SEQ_TEXTS)


def test_side_by_side_rounds_for_every_model(t5_dir, t5_onnx):
    models = {"pytorch": served(PYTORCH, t5_dir), "onnx": served(ONNX, t5_onnx)}
    timings = time_generate_side_by_side(models, SEQ2SEQ_TEXTS, MAX_NEW_TOKENS, batch_size=2, rounds=2)
    for runs in timings.values():
        assert [len(seconds) for seconds in runs["call_seconds"]] == [len(SEQ2SEQ_TEXTS)] * 2
        assert runs["generated_tokens"] == [len(SEQ2SEQ_TEXTS) * MAX_NEW_TOKENS] * 2  # equal lengths: equal work
        assert len(runs["examples_per_second"]) == 2 and all(v > 0 for v in runs["tokens_per_second"])
    ratios = ratios_to_baseline(timings, "pytorch")
    assert ratios["pytorch"]["examples_per_second"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert ratios["onnx"]["call_p50_speedup"]["median"] > 0


def test_pytorch_without_cache_recomputes_the_prefix(t5_dir):
    """The no-cache baseline feeds its decoder the whole prefix at every step (as an ONNX decoder exported without
    the cache does) and decodes what the cached model decodes."""
    decoded, lengths = {}, {}
    for use_cache in (True, False):
        model = served(PYTORCH, t5_dir, use_cache=use_cache)
        seen = lengths[use_cache] = []
        model.model.decoder.register_forward_pre_hook(
            lambda _, args, kw, seen=seen: seen.append(kw["input_ids"].shape[1]), with_kwargs=True
        )
        decoded[use_cache] = generate_texts(model, SEQ2SEQ_TEXTS[:1], MAX_NEW_TOKENS, 1, fixed_length=True)
    assert lengths[True] == [1] * MAX_NEW_TOKENS
    assert lengths[False] == list(range(1, MAX_NEW_TOKENS + 1))
    assert decoded[True] == decoded[False]


def test_bad_inputs_are_one_line(t5_dir, t5_onnx, tmp_path):
    cases = [
        (lambda: served(ONNX, tmp_path), f"^{tmp_path}: "),
        (
            lambda: serve_generate_in_child(ONNX, fp32(ONNX), tmp_path, SEQ2SEQ_TEXTS, CFG),
            f"^{tmp_path}: ",
        ),
        (lambda: serve_generate_in_child(ONNX, fp32(ONNX), t5_onnx, [], CFG), f"^serving {t5_onnx}: no texts"),
        (lambda: time_generate_side_by_side({}, [], 4, 1, 1), "^side by side: 0 texts"),
        (
            lambda: quality_by_model(SEQ2SEQ_TEXTS, {"a": SEQ2SEQ_TEXTS}, "fp32", "chrf", 10, 0),
            "^baseline 'fp32' is not among",
        ),
    ]
    for call, message in cases:
        with pytest.raises(QuantpipeError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    models = {"pytorch": served(PYTORCH, t5_dir)}
    with pytest.raises(QuantpipeError, match=r"^max_new_tokens: must be at least 1 \(got 0\)$"):
        time_generate_side_by_side(models, SEQ2SEQ_TEXTS, 0, batch_size=2, rounds=1)
