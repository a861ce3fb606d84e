"""Serve one seq2seq model in a fresh process and measure what it costs (memory, load time, outputs, per-call
seconds, file sizes). This module imports only what serving needs (no scipy, no torch unless the model is
PyTorch's), so that the process's memory is the model's and its engine's.

`python -m quantpipe.seq2seq.measure request.json response.json` is the child of `measure_in_child`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.inference import threads_per_stream
from quantpipe.io import VARIANT_FILE, artifact_error, check_model_dir, loading, read_json
from quantpipe.memory import peak_rss_bytes, rss_bytes
from quantpipe.seq2seq.export import ENCODER_FILE
from quantpipe.seq2seq.generation import call_latencies, generate_texts

TORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
ENGINES = ("onnxruntime", "openvino", "pytorch")


def serving(model_dir: Path) -> dict:
    """How a model directory is served: its `serve` record (`engine` and the engine's options, written by the
    seq2seq_quantize stage into VARIANT_FILE), else by its files: `onnxruntime` for an ONNX export
    (encoder_model.onnx), `pytorch` for a transformers model directory (config.json); anything else is one error
    line."""
    model_dir = Path(model_dir)
    if (model_dir / VARIANT_FILE).is_file():
        serve = read_json(model_dir / VARIANT_FILE, expect=dict).get("serve")
        if isinstance(serve, dict) and serve.get("engine") in ENGINES:
            return serve
        raise artifact_error(model_dir / VARIANT_FILE, f"no `serve` record with an engine of {list(ENGINES)}")
    if (model_dir / ENCODER_FILE).is_file():
        return {"engine": "onnxruntime"}
    if (model_dir / "config.json").is_file():
        return {"engine": "pytorch"}
    raise QuantpipeError(
        f"{model_dir}: neither a seq2seq ONNX directory ({ENCODER_FILE}) nor a PyTorch model directory (config.json)"
    )


def load_seq2seq(model_dir: Path, threads: int, use_cache: bool = True, max_length: int | None = None):
    """The model of `model_dir` served as `serving` says: ONNX Runtime or OpenVINO sessions under the lean loop
    (`quantpipe.seq2seq.lean`: neither torch nor transformers imported), or PyTorch's generate; sources truncated
    to `max_length` tokens, with the `threads` of its `serve` record if it has some, else `threads`. `use_cache`
    applies to PyTorch; an export uses its cache if it has one."""
    serve = serving(model_dir)
    threads, streams = serve.get("threads", threads), serve.get("streams", 1)
    if serve["engine"] == "pytorch":
        from quantpipe.seq2seq.runtime import TorchSeq2seq

        return TorchSeq2seq(model_dir, threads, use_cache, max_length, serve.get("autocast"))
    from quantpipe.seq2seq.lean import LeanSeq2seq, openvino_sessions, ort_sessions

    check_model_dir(model_dir)
    with loading(model_dir, f"seq2seq {serve['engine']} model"):
        if serve["engine"] == "openvino":
            sessions = openvino_sessions(model_dir, threads, serve.get("precision", "default"), streams)
        else:
            sessions = [ort_sessions(model_dir, threads_per_stream(threads, streams)) for _ in range(streams)]
        return LeanSeq2seq(model_dir, sessions, max_length)


def file_sizes_mb(model_dir: Path) -> dict[str, float]:
    """Size on disk per model file, in MB: each ONNX file (encoder, decoders) with its external data if any,
    OpenVINO's weight files, or the PyTorch weights."""
    model_dir = Path(model_dir)
    graphs = sorted(model_dir.glob("*.onnx")) or sorted(model_dir.glob("*.bin"))  # ONNX, or OpenVINO's weights
    files = graphs or sorted(path for pattern in TORCH_WEIGHTS for path in model_dir.glob(pattern))
    return {path.name: _bytes_with_external_data(path) / 1e6 for path in files}


def _bytes_with_external_data(path: Path) -> int:
    """A file's size plus that of its ONNX external data (`<name>_data`, as Optimum saves it), if any."""
    external = path.with_name(path.name + "_data")
    return path.stat().st_size + (external.stat().st_size if external.is_file() else 0)


@dataclass
class MeasureRequest:
    """What `measure` serves and how: the model's directory, the texts, the generation and timing settings."""

    model_dir: str
    texts: list[str]
    max_new_tokens: int
    latency_samples: int
    batch_size: int
    threads: int
    max_length: int | None = None  # source tokens (longer texts truncated); None: the tokenizer's limit
    use_cache: bool = True  # PyTorch: generate with the decoder's key/value cache (ONNX: as exported)


def measure(request: MeasureRequest) -> dict:
    """Everything one model costs in this process, in the order a service meets it: load the model and its
    tokenizer; one warm-up call on the first text, then one more call on it (the RSS just before and just after
    each gives the increment of a first and of a later call, as memory_profiler shows a line's); calls one text
    at a time over the first `latency_samples` texts. Up to there the peak RSS is the serving one; then the
    outputs for every text in batches of `batch_size` (what quality is scored on), after which the process's
    peak. Timed calls generate exactly `max_new_tokens` tokens (equal lengths across models); the outputs stop
    at their end token. `torch_imported`: whether serving the model imported torch (an export served by the lean
    loop does not)."""
    texts, latency_samples, max_new_tokens = request.texts, request.latency_samples, request.max_new_tokens
    model_dir, max_length = Path(request.model_dir), request.max_length
    if not texts or latency_samples < 1:
        raise QuantpipeError(f"measure: {len(texts)} texts, latency_samples {latency_samples} (need at least 1 each)")
    rss_start = rss_bytes()
    start = time.perf_counter()
    model = load_seq2seq(model_dir, request.threads, request.use_cache, max_length)
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_bytes()

    def one_call() -> int:
        call_latencies(model, texts[:1], max_new_tokens, fixed_length=True)
        return rss_bytes()

    rss_after_first = one_call()
    rss_before_call = rss_bytes()
    rss_after_call = one_call()
    seconds = call_latencies(model, texts[:latency_samples], max_new_tokens, fixed_length=True)
    peak_serving = peak_rss_bytes()
    generated = generate_texts(model, texts, max_new_tokens, request.batch_size)
    return {
        "serving": serving(model_dir),
        "files_mb": file_sizes_mb(model_dir),
        "outputs": generated.texts,
        "new_tokens": generated.new_tokens,
        "latencies_s": seconds,
        "memory": {
            "rss_start_mb": rss_start / 1e6,
            "rss_after_load_mb": rss_loaded / 1e6,
            "first_call_increment_mb": (rss_after_first - rss_loaded) / 1e6,
            "one_call_increment_mb": (rss_after_call - rss_before_call) / 1e6,
            "peak_rss_serving_mb": peak_serving / 1e6,
            "peak_rss_mb": peak_rss_bytes() / 1e6,
            "load_seconds": load_seconds,
            "torch_imported": "torch" in sys.modules,
            "transformers_imported": "transformers" in sys.modules,
        },
    }


def measure_in_child(request: MeasureRequest) -> dict:
    """`measure` in a fresh Python process (`python -m quantpipe.seq2seq.measure`), request and response as JSON
    files, so that its memory holds this one model and what its engine imports."""
    with tempfile.TemporaryDirectory() as tmp:
        request_file, response = Path(tmp) / "request.json", Path(tmp) / "response.json"
        request_file.write_text(json.dumps(asdict(request)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run(
            [sys.executable, "-m", "quantpipe.seq2seq.measure", str(request_file), str(response)], check=False, env=env
        )
        if not response.is_file():
            raise QuantpipeError(f"measuring {request.model_dir}: the process stopped with exit code {done.returncode}")
        answer = json.loads(response.read_text())
    if answer["status"] == "error":
        raise QuantpipeError(answer["value"])
    return answer["value"]


def _main(request: str, response: str) -> None:
    try:
        answer = {"status": "ok", "value": measure(MeasureRequest(**json.loads(Path(request).read_text())))}
    except QuantpipeError as exc:
        answer = {"status": "error", "value": str(exc)}
    Path(response).write_text(json.dumps(answer))


if __name__ == "__main__":
    _main(*sys.argv[1:3])
