"""Serve one model in a fresh process, the way a service would: import only what its kind's runtime needs
(no torch for an ONNX Runtime or OpenVINO model), load it, answer requests of its task (classify: batches of
texts -> labels; generate: texts -> generated texts). The process's figures (load time, resident memory after
load, after one call, peak) are that model's alone.

`python -m quantpipe.serving request.json response.json` is the child of `serve_in_child` and
`serve_generate_in_child`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quantpipe.config.registry import CLASSIFY, GENERATE, kind_at
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.config.seq2seq import GenerateVariantParams, Seq2seqEvaluateParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict, single_example_latencies
from quantpipe.io import first_line
from quantpipe.kinds.base import Kind
from quantpipe.memory import peak_rss_bytes, rss_bytes
from quantpipe.seq2seq.generation import call_latencies, generate_texts

TORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def serve(
    kind: Kind,
    variant: VariantParams,
    model_dir: str,
    tokenizer_dir: str,
    texts: dict[str, list[str]],
    cfg: EvaluateParams,
) -> dict:
    """Load the model, answer one batch, time texts one at a time (batch-size-1 latencies), then pass over
    each whole split in batches (the predictions), every text cut by the variant's length policy. Returns them with the load time and the memory figures:
    resident after load and after one batch, the peak while serving one text at a time, and the peak of the
    whole process (the batched passes included)."""
    rss_start = rss_bytes()
    start = time.perf_counter()
    tokenizer = Tokenizer(tokenizer_dir)
    runtime = kind.load(Path(model_dir), variant, cfg)
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_bytes()
    length = variant.length_policy(cfg)
    first = next(iter(texts.values()))[: cfg.batch_size]
    predict(runtime, tokenizer, first, cfg.batch_size, length)
    rss_one_batch = rss_bytes()
    latencies = {
        dataset: single_example_latencies(
            runtime, tokenizer, items[: cfg.latency_samples], length, desc=f"{dataset} latency (batch size 1)"
        )
        for dataset, items in texts.items()
    }
    peak_serving = peak_rss_bytes()  # load, one batch, then one text at a time: a service's high-water mark
    out = {}
    for dataset, items in texts.items():
        run = predict(runtime, tokenizer, items, cfg.batch_size, length, desc=f"{dataset} predictions")
        out[dataset] = {"labels": run.labels.tolist(), "latencies": latencies[dataset]}
    return {
        "datasets": out,
        "memory": {
            "rss_start_mb": rss_start / 1e6,
            "rss_after_load_mb": rss_loaded / 1e6,
            "rss_after_one_batch_mb": rss_one_batch / 1e6,
            "peak_rss_serving_mb": peak_serving / 1e6,
            "peak_rss_mb": peak_rss_bytes() / 1e6,
            "load_seconds": load_seconds,
            "torch_imported": "torch" in sys.modules,
        },
    }


def serve_in_child(
    kind: Kind,
    variant: VariantParams,
    model_dir: Path,
    tokenizer_dir: Path,
    texts: dict[str, list[str]],
    cfg: EvaluateParams,
) -> dict:
    """`serve` in a fresh Python process (`_in_child`)."""
    arguments = {"tokenizer_dir": str(tokenizer_dir), "texts": texts, "cfg": cfg.model_dump(mode="json")}
    return _in_child(CLASSIFY, kind, variant, model_dir, arguments)


def serve_generate(
    kind: Kind,
    variant: GenerateVariantParams,
    model_dir: str,
    texts: list[str],
    cfg: Seq2seqEvaluateParams,
    max_length: int | None = None,
) -> dict:
    """Everything one seq2seq model costs in this process, in the order a service meets it: load the model and
    its tokenizer; one warm-up call on the first text, then one more call on it (the RSS just before and just
    after each gives the increment of a first and of a later call, as memory_profiler shows a line's); calls one
    text at a time over the first `latency_samples` texts. Up to there the peak RSS is the serving one; then the
    outputs for every text in batches of `batch_size` (what quality is scored on), after which the process's
    peak. Timed calls generate exactly `max_new_tokens` tokens (equal lengths across models); the outputs stop
    at their end token. Sources are truncated to `max_length` tokens. `torch_imported`: whether serving the
    model imported torch (an export served by the lean loop does not)."""
    model_dir = Path(model_dir)
    if not texts:
        raise QuantpipeError(f"serving {model_dir}: no texts to generate from")
    rss_start = rss_bytes()
    start = time.perf_counter()
    model = kind.load_generate(model_dir, variant, cfg.serving(max_length))
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_bytes()

    def one_call() -> int:
        call_latencies(model, texts[:1], cfg.max_new_tokens, fixed_length=True)
        return rss_bytes()

    rss_after_first = one_call()
    rss_before_call = rss_bytes()
    rss_after_call = one_call()
    seconds = call_latencies(model, texts[: cfg.latency_samples], cfg.max_new_tokens, fixed_length=True)
    peak_serving = peak_rss_bytes()
    generated = generate_texts(model, texts, cfg.max_new_tokens, cfg.batch_size)
    return {
        "served_by": {"kind": kind.name, **variant.served_by(cfg.threads)},
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


def serve_generate_in_child(
    kind: Kind,
    variant: GenerateVariantParams,
    model_dir: Path,
    texts: list[str],
    cfg: Seq2seqEvaluateParams,
    max_length: int | None = None,
) -> dict:
    """`serve_generate` in a fresh Python process (`_in_child`)."""
    arguments = {"texts": texts, "cfg": cfg.model_dump(mode="json"), "max_length": max_length}
    return _in_child(GENERATE, kind, variant, model_dir, arguments)


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


def _in_child(
    task: str, kind: Kind, variant: VariantParams | GenerateVariantParams, model_dir: Path, arguments: dict
) -> dict:
    """Serve the model for `task` in a fresh Python process (`python -m quantpipe.serving`), so that it imports
    what serving this kind needs and nothing the parent stage imported. Request and response pass as JSON files
    (data only: nothing read back can run code); a failure in the child comes back as its one line."""
    request = {
        "task": task,
        "kind": type(kind).__module__,  # a module exposing KIND, as the registry names them
        "variant": variant.model_dump(mode="json"),
        "model_dir": str(model_dir),
        "arguments": arguments,
    }
    with tempfile.TemporaryDirectory() as tmp:
        request_file, response_file = Path(tmp) / "request.json", Path(tmp) / "response.json"
        request_file.write_text(json.dumps(request))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # where the kind's module is
        done = subprocess.run(
            [sys.executable, "-m", "quantpipe.serving", str(request_file), str(response_file)], check=False, env=env
        )
        if not response_file.is_file():
            raise QuantpipeError(f"serving {model_dir}: the process stopped with exit code {done.returncode}")
        response = json.loads(response_file.read_text())
    if "error" in response:
        raise QuantpipeError(response["error"])
    return response["result"]


# task -> how the child serves it and the settings section its arguments carry
SERVERS = {CLASSIFY: (serve, EvaluateParams), GENERATE: (serve_generate, Seq2seqEvaluateParams)}


def _serve_request(request: dict) -> dict:
    kind, (serve_task, settings) = kind_at(request["kind"]), SERVERS[request["task"]]
    variant = kind.tasks[request["task"]].model_validate(request["variant"])
    arguments = {**request["arguments"], "cfg": settings.model_validate(request["arguments"]["cfg"])}
    return serve_task(kind, variant, request["model_dir"], **arguments)


def _main(request_file: str, response_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    try:
        response = {"result": _serve_request(request)}
    except QuantpipeError as exc:
        response = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure is the parent's one line, not a traceback here
        response = {"error": f"serving {request['model_dir']}: {type(exc).__name__}: {first_line(exc)}"}
    Path(response_file).write_text(json.dumps(response))


if __name__ == "__main__":
    _main(*sys.argv[1:3])
