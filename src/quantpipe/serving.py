"""Serve one model in a fresh process, the way a service would: import only what its kind's runtime needs
(no torch for an ONNX Runtime or OpenVINO model), load it, answer batches. The process's figures (load time,
resident memory after load, after one batch, peak) are that model's alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quantpipe.config.registry import kind_at
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict, single_example_latencies
from quantpipe.io import first_line
from quantpipe.kinds.base import Kind
from quantpipe.memory import peak_rss_bytes, rss_bytes


def serve(
    kind: Kind,
    variant: VariantParams,
    model_dir: str,
    tokenizer_dir: str,
    texts: dict[str, list[str]],
    cfg: EvaluateParams,
) -> dict:
    """Load the model, answer one batch, time texts one at a time (batch-size-1 latencies), then pass over
    each whole split in batches (the predictions). Returns them with the load time and the memory figures:
    resident after load and after one batch, the peak while serving one text at a time, and the peak of the
    whole process (the batched passes included)."""
    rss_start = rss_bytes()
    start = time.perf_counter()
    tokenizer = Tokenizer(tokenizer_dir)
    runtime = kind.load(Path(model_dir), variant, cfg)
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_bytes()
    first = next(iter(texts.values()))[: cfg.batch_size]
    predict(runtime, tokenizer, first, cfg.batch_size, cfg.max_length)
    rss_one_batch = rss_bytes()
    latencies = {
        dataset: single_example_latencies(
            runtime, tokenizer, items[: cfg.latency_samples], cfg.max_length, desc=f"{dataset} latency (batch size 1)"
        )
        for dataset, items in texts.items()
    }
    peak_serving = peak_rss_bytes()  # load, one batch, then one text at a time: a service's high-water mark
    out = {}
    for dataset, items in texts.items():
        run = predict(runtime, tokenizer, items, cfg.batch_size, cfg.max_length, desc=f"{dataset} predictions")
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
    """`serve` in a fresh Python process (`python -m quantpipe.serving`), so that it imports what serving
    this kind needs and nothing the parent stage imported. Request and response pass as JSON files (data only:
    nothing read back can run code); a failure in the child comes back as its one line."""
    request = {
        "kind": type(kind).__module__,  # a module exposing KIND, as the registry names them
        "variant": variant.model_dump(mode="json"),
        "model_dir": str(model_dir),
        "tokenizer_dir": str(tokenizer_dir),
        "texts": texts,
        "cfg": cfg.model_dump(mode="json"),
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


def _serve_request(request: dict) -> dict:
    kind = kind_at(request["kind"])
    variant = kind.params.model_validate(request["variant"])
    cfg = EvaluateParams.model_validate(request["cfg"])
    return serve(kind, variant, request["model_dir"], request["tokenizer_dir"], request["texts"], cfg)


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
