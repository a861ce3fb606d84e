"""Measure seq2seq models: one model per fresh process (memory, load time, outputs, per-call latency, file sizes),
every model side by side in one process (per-call latency and batched throughput, round after round), and
quality against the references and the fp32 model's outputs.

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

from tqdm.auto import tqdm

from quantpipe.errors import QuantpipeError
from quantpipe.memory import peak_rss_bytes, rss_bytes
from quantpipe.seq2seq.export import ENCODER_FILE
from quantpipe.seq2seq.generation import call_latencies, generate_texts
from quantpipe.seq2seq.quality import generation_quality
from quantpipe.seq2seq.runtime import load_ort_seq2seq, load_torch_seq2seq
from quantpipe.side_by_side import round_order
from quantpipe.statistics import latency_percentiles, paired_ratio

TORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def engine_of(model_dir: Path) -> str:
    """`onnxruntime` for a directory from quantpipe.seq2seq.export or .quantize (it holds encoder_model.onnx),
    `pytorch` for a transformers model directory (config.json); anything else is one error line."""
    model_dir = Path(model_dir)
    if (model_dir / ENCODER_FILE).is_file():
        return "onnxruntime"
    if (model_dir / "config.json").is_file():
        return "pytorch"
    raise QuantpipeError(
        f"{model_dir}: neither a seq2seq ONNX directory ({ENCODER_FILE}) nor a PyTorch model directory (config.json)"
    )


def load_seq2seq(model_dir: Path, threads: int, use_cache: bool = True):
    """The model of `model_dir` loaded by its engine's loader, with its tokenizer (saved beside it). `use_cache`
    applies to PyTorch; an ONNX model uses the key/value cache if it was exported with it."""
    from transformers import AutoTokenizer

    if engine_of(model_dir) == "onnxruntime":
        model = load_ort_seq2seq(model_dir, threads)
    else:
        model = load_torch_seq2seq(model_dir, threads, use_cache)
    return model, AutoTokenizer.from_pretrained(model_dir)


def file_sizes_mb(model_dir: Path) -> dict[str, float]:
    """Size on disk per model file, in MB: each ONNX file (encoder, decoder) with its external data if any, or
    the PyTorch weights."""
    model_dir = Path(model_dir)
    onnx = sorted(model_dir.glob("*.onnx"))
    files = onnx or sorted(path for pattern in TORCH_WEIGHTS for path in model_dir.glob(pattern))
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
    at their end token. `torch_imported` is true for ONNX Runtime too: Optimum's ORTModelForSeq2SeqLM imports
    torch (generation runs in transformers' torch loop, ONNX Runtime computes the encoder and decoder steps)."""
    texts, latency_samples, max_new_tokens = request.texts, request.latency_samples, request.max_new_tokens
    model_dir, max_length = Path(request.model_dir), request.max_length
    if not texts or latency_samples < 1:
        raise QuantpipeError(f"measure: {len(texts)} texts, latency_samples {latency_samples} (need at least 1 each)")
    rss_start = rss_bytes()
    start = time.perf_counter()
    model, tokenizer = load_seq2seq(model_dir, request.threads, request.use_cache)
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_bytes()

    def one_call() -> int:
        call_latencies(model, tokenizer, texts[:1], max_new_tokens, fixed_length=True, max_length=max_length)
        return rss_bytes()

    rss_after_first = one_call()
    rss_before_call = rss_bytes()
    rss_after_call = one_call()
    seconds = call_latencies(
        model, tokenizer, texts[:latency_samples], max_new_tokens, fixed_length=True, max_length=max_length
    )
    peak_serving = peak_rss_bytes()
    generated = generate_texts(model, tokenizer, texts, max_new_tokens, request.batch_size, max_length=max_length)
    return {
        "engine": engine_of(model_dir),
        "files_mb": file_sizes_mb(model_dir),
        "outputs": generated.texts,
        "new_tokens": generated.new_tokens,
        "latencies_s": seconds,
        "latency": latency_percentiles(seconds),
        "memory": {
            "rss_start_mb": rss_start / 1e6,
            "rss_after_load_mb": rss_loaded / 1e6,
            "first_call_increment_mb": (rss_after_first - rss_loaded) / 1e6,
            "one_call_increment_mb": (rss_after_call - rss_before_call) / 1e6,
            "peak_rss_serving_mb": peak_serving / 1e6,
            "peak_rss_mb": peak_rss_bytes() / 1e6,
            "load_seconds": load_seconds,
            "torch_imported": "torch" in sys.modules,
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


def time_generate_side_by_side(
    models: dict[str, tuple],
    texts: list[str],
    max_new_tokens: int,
    batch_size: int,
    rounds: int,
    max_length: int | None = None,
    desc: str = "rounds",
) -> dict[str, dict]:
    """Every (model, tokenizer) of `models` timed in this process, `rounds` times, in the balanced order of
    `quantpipe.side_by_side.round_order`. Each round and model: the seconds of each call one text at a time
    (`call_seconds`, one list per round), then one pass over the texts in batches of `batch_size`
    (`examples_per_second`, `tokens_per_second`, `generated_tokens`, one value per round). Every call generates
    exactly `max_new_tokens` tokens, so all models do the same work. Each model first makes one untimed call
    and one untimed batch."""
    if not texts or rounds < 1:
        raise QuantpipeError(f"side by side: {len(texts)} texts, {rounds} rounds (need at least 1 each)")
    fixed = {"fixed_length": True, "max_length": max_length}

    def calls(name: str, items: list[str]) -> list[float]:
        return call_latencies(*models[name], items, max_new_tokens, **fixed)

    def batched(name: str, items: list[str]):
        return generate_texts(*models[name], items, max_new_tokens, batch_size, **fixed)

    for name in models:
        calls(name, texts[:1])
        batched(name, texts[:batch_size])
    keys = ("call_seconds", "examples_per_second", "tokens_per_second", "generated_tokens")
    out = {name: {key: [] for key in keys} for name in models}
    for r in tqdm(range(rounds), desc=desc, unit="round"):
        for name in round_order(list(models), r):
            out[name]["call_seconds"].append(calls(name, texts))
            start = time.perf_counter()
            tokens = sum(batched(name, texts).new_tokens)
            seconds = time.perf_counter() - start
            out[name]["examples_per_second"].append(len(texts) / seconds)
            out[name]["tokens_per_second"].append(tokens / seconds)
            out[name]["generated_tokens"].append(tokens)
    return out


def ratios_to_baseline(timings: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Per model of `time_generate_side_by_side`'s result, its paired ratios to `baseline` over the rounds
    (median, min, max; above 1 is faster): examples/s and tokens/s divided by the baseline's, and the per-call
    speedup, the baseline's p50 latency divided by the model's."""
    _check_baseline(baseline, timings)

    def p50(name: str) -> list[float]:
        return [latency_percentiles(seconds)["p50_ms"] for seconds in timings[name]["call_seconds"]]

    return {
        name: {
            "examples_per_second": paired_ratio(runs["examples_per_second"], timings[baseline]["examples_per_second"]),
            "tokens_per_second": paired_ratio(runs["tokens_per_second"], timings[baseline]["tokens_per_second"]),
            "call_p50_speedup": paired_ratio(p50(baseline), p50(name)),
        }
        for name, runs in timings.items()
    }


def quality_by_model(
    references: list[str], outputs: dict[str, list[str]], baseline: str, n_resamples: int, seed: int
) -> dict[str, dict]:
    """Per model: ROUGE-L F1 of its outputs against `references` with a bootstrap 95% CI, and the fraction of its
    outputs identical to the `baseline` model's (the fp32 model's)."""
    _check_baseline(baseline, outputs)
    return {
        name: generation_quality(texts, references, n_resamples, seed, reference_outputs=outputs[baseline])
        for name, texts in outputs.items()
    }


def _check_baseline(baseline: str, models: dict) -> None:
    if baseline not in models:
        raise QuantpipeError(f"baseline '{baseline}' is not among the models measured ({', '.join(models)})")


def _main(request: str, response: str) -> None:
    try:
        answer = {"status": "ok", "value": measure(MeasureRequest(**json.loads(Path(request).read_text())))}
    except QuantpipeError as exc:
        answer = {"status": "error", "value": str(exc)}
    Path(response).write_text(json.dumps(answer))


if __name__ == "__main__":
    _main(*sys.argv[1:3])
