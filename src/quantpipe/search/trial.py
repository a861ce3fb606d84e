"""One trial: build a candidate variant with its kind, score it on the selection data and time it against the
fp32 ONNX model in paired rounds that alternate between the two (as the side_by_side stage does).

`run_trial` is a plain function of picklable arguments: the stage calls it in-process, in a process pool or
as a Ray task, and the results come back to the stage, which writes them to the trial cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantpipe.config import Params
from quantpipe.config.registry import get_kind, variant_params
from quantpipe.config.students import BASE_MODEL
from quantpipe.data import read_prepared
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict
from quantpipe.io import read_onnx, sweep_temporaries, write_json
from quantpipe.kinds import build_inputs, model_dirs
from quantpipe.kinds.base import BuildInputs
from quantpipe.kinds.ort_int8 import graph_to_quantize
from quantpipe.metrics import classification_metrics
from quantpipe.ort_quantize import cpu_isa
from quantpipe.sensitivity import node_part
from quantpipe.side_by_side import time_side_by_side
from quantpipe.statistics import paired_ratio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialContext:
    """What every trial reads: params, the pipeline's models and the selection data (dataset -> texts, labels)."""

    params: Params
    base: Path
    onnx: Path
    calibration: Path
    prepared: Path
    selection: dict[str, tuple[list[str], np.ndarray]]

    def fingerprint(self) -> str:
        """What a trial's result depends on besides its variant: the fp32 models (the base model's and the
        students' exports), the ranges, the selection data,
        the session and timing settings and the CPU. A cached result counts only while this is unchanged."""
        digest = hashlib.sha256()
        sources = [model_dirs(model, self.base, self.onnx)[1] for model in (BASE_MODEL, *self.params.students)]
        for root in (*sources, self.calibration):
            if not Path(root).is_dir():  # a student not distilled yet: no trial of it can have run
                continue
            for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(hashlib.md5(path.read_bytes()).hexdigest().encode())
        for name, (texts, labels) in sorted(self.selection.items()):
            digest.update(json.dumps([name, texts, labels.tolist()]).encode())
        cfg = self.params.evaluate
        cpu = cpu_info()
        settings = {
            "session": [cfg.batch_size, cfg.max_length, cfg.threads, cfg.graph_optimization, cfg.execution_mode],
            "timing": self.params.search.timing.model_dump(),
            "calibrations": {k: v.model_dump() for k, v in self.params.calibrations.items()},
            "cpu": [cpu["model"], cpu_isa(cpu)],
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()[:16]


_FP32: dict[str, tuple] = {}  # per process: the fp32 ONNX runtime, the tokenizer and its selection predictions


def _fp32(ctx: TrialContext) -> tuple:
    if str(ctx.onnx) not in _FP32:
        cfg = ctx.params.evaluate
        kind = get_kind("onnx")
        runtime = kind.load(ctx.onnx, kind.params(kind="onnx"), cfg)
        tokenizer = Tokenizer(ctx.base)
        labels = {
            name: predict(runtime, tokenizer, texts, cfg.batch_size, cfg.max_length).labels
            for name, (texts, _) in ctx.selection.items()
        }
        _FP32[str(ctx.onnx)] = (runtime, tokenizer, labels)
    return _FP32[str(ctx.onnx)]


def _graph(variant, ctx: TrialContext) -> Path:
    """The graph the variant quantizes: its model's export, or the optimized graph stored with its calibration
    (the calibrate stages store the base model's only)."""
    if variant.model != BASE_MODEL and variant.optimization != "none":
        raise QuantpipeError(
            f"exclude_parts: the optimized graph of student '{variant.model}' is made inside its build; its nodes "
            "cannot be named beforehand (exclude parts of an unoptimized variant)"
        )
    return graph_to_quantize(variant, model_dirs(variant.model, ctx.base, ctx.onnx)[1], ctx.calibration)


def graph_parts(variant, ctx: TrialContext) -> list[str]:
    """The parts of the graph a variant quantizes: `embeddings`, `layer.<i>` in order, then `head`."""
    nodes = read_onnx(_graph(variant, ctx), load_external_data=False).graph.node
    parts = {node_part(n) for n in nodes}
    return sorted(parts, key=lambda p: (p != "embeddings", p == "head", int(p.split(".")[1]) if "." in p else 0))


def parts_to_nodes(variant, ctx: TrialContext, parts: tuple[str, ...]) -> list[str]:
    """The nodes of the graph a variant quantizes that belong to `parts` (`embeddings`, `layer.<i>`, `head`)."""
    import onnx

    if variant.kind == "dynamic" and variant.optimization != "none":
        raise QuantpipeError(
            "exclude_parts: an optimized dynamic variant's fused graph is not stored, its nodes cannot be named"
        )
    graph = _graph(variant, ctx)
    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    found = [n.name for n in nodes if node_part(n) in parts]
    missing = sorted(set(parts) - {node_part(n) for n in nodes})
    if missing:
        raise QuantpipeError(f"exclude_parts: {missing} not in {graph}")
    return found


@contextmanager
def built(ctx: TrialContext, raw: dict, exclude_parts: tuple[str, ...]) -> Iterator[tuple]:
    """(variant, runtime, resolved, size in bytes) of a trial, built by its kind in a scratch directory."""
    variant = variant_params("trial", raw)
    if exclude_parts:
        excluded = parts_to_nodes(variant, ctx, exclude_parts)
        variant = variant.model_copy(update={"nodes_to_exclude": sorted({*variant.nodes_to_exclude, *excluded})})
    kind = get_kind(variant.kind)
    kind.check_available("trial")
    with tempfile.TemporaryDirectory(prefix="quantpipe-trial-") as scratch:
        out, calibration = Path(scratch) / "model", Path(scratch) / "calibration"
        out.mkdir()
        pipeline = BuildInputs(ctx.params, ctx.base, ctx.onnx, ctx.calibration, ctx.prepared)
        resolved = kind.build("trial", variant, build_inputs(ctx.params, kind, variant, pipeline, calibration), out)
        yield variant, kind.load(out, variant, ctx.params.evaluate), resolved, kind.size_bytes(out)


def _run(ctx: TrialContext, raw: dict, exclude_parts: tuple[str, ...], timed: bool) -> dict:
    params, cfg = ctx.params, ctx.params.evaluate
    fp32, tokenizer, fp32_labels = _fp32(ctx)
    with built(ctx, raw, exclude_parts) as (variant, runtime, resolved, size):
        datasets = {}
        length = variant.length_policy(cfg)
        for name, (texts, labels) in ctx.selection.items():
            pred = predict(runtime, tokenizer, texts, cfg.batch_size, length).labels
            accuracy, fp32_accuracy = float(np.mean(pred == labels)), float(np.mean(fp32_labels[name] == labels))
            row = {
                "examples": len(texts),
                "accuracy": accuracy,
                "fp32_accuracy": fp32_accuracy,
                "accuracy_delta": 100 * (accuracy - fp32_accuracy),
                "agreement": float(np.mean(pred == fp32_labels[name])),
            }
            if timed:
                timing = params.search.timing
                sample = texts[: timing.max_samples]
                rounds = time_side_by_side(
                    {"fp32": fp32, "trial": runtime},
                    tokenizer,
                    sample,
                    cfg,
                    timing.rounds,
                    desc=f"timing {name}",
                    lengths={"trial": length},
                )
                row["timed_examples"] = len(sample)
                row["speed_ratio"] = paired_ratio(
                    rounds["trial"]["samples_per_second"], rounds["fp32"]["samples_per_second"]
                )
            datasets[name] = row
    out = {
        "status": "ok",
        "variant": variant.model_dump(mode="json"),
        "resolved": resolved,
        "size_mb": size / 1e6,
        "datasets": datasets,
        "worst_delta": min(row["accuracy_delta"] for row in datasets.values()),
    }
    if timed:  # one speed per trial: the geometric mean of the datasets' median ratios
        medians = [row["speed_ratio"]["median"] for row in datasets.values()]
        out["speed_ratio"] = math.exp(sum(math.log(m) for m in medians) / len(medians))
    return out


def on_report_splits(ctx: TrialContext, raw: dict, exclude_parts: tuple[str, ...]) -> dict:
    """A trial's accuracy on the report's evaluated splits, with bootstrap 95% CIs, beside fp32 ONNX's."""
    cfg = ctx.params.evaluate
    fp32, tokenizer, _ = _fp32(ctx)
    out = {}
    with built(ctx, raw, exclude_parts) as (variant, runtime, _, _):
        for name in cfg.datasets:
            frame = read_prepared(ctx.prepared, name, "eval").head(cfg.max_samples or None)
            texts, labels = frame["text"].tolist(), frame["label"].to_numpy()
            scores = {}
            for model, rt, length in (("trial", runtime, variant.length_policy(cfg)), ("fp32", fp32, cfg.max_length)):
                pred = predict(rt, tokenizer, texts, cfg.batch_size, length).labels
                scores[model] = classification_metrics(labels, pred, cfg.bootstrap_resamples, cfg.seed)
            out[name] = {
                "examples": len(texts),
                **{
                    k: scores["trial"][k]
                    for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")
                    if k in scores["trial"]
                },
                "fp32_accuracy": scores["fp32"]["accuracy"],
                "accuracy_delta": 100 * (scores["trial"]["accuracy"] - scores["fp32"]["accuracy"]),
            }
    return out


def run_trial(ctx: TrialContext, raw: dict, exclude_parts: tuple[str, ...] = (), timed: bool = True) -> dict:
    """Build and measure one trial; a failure is a result with its one-line reason, never an exception."""
    start = time.perf_counter()
    try:
        result = _run(ctx, raw, tuple(exclude_parts), timed)
    except QuantpipeError as exc:
        result = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime and the engines raise anything; the search goes on
        first = (str(exc).strip().splitlines() or [""])[0]
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {first}"[:300]}
    return {**result, "seconds": time.perf_counter() - start}


# what a cached result must hold to be used: its status's keys (the rest is checked where it is read)
RESULT_KEYS = {"ok": {"variant", "datasets", "worst_delta", "size_mb"}, "failed": {"reason"}}


def read_entry(path: Path) -> tuple[dict | None, str | None]:
    """A trial cache file's entry, or None and what is wrong with the file, in a few words."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    if not text.strip():
        return None, "empty"
    marker = next((i for i, line in enumerate(text.splitlines(), 1) if line.startswith(("<<<<<<<", ">>>>>>>"))), 0)
    if marker:
        return None, f"a git merge-conflict marker on line {marker}"
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(stored, dict) or not isinstance(stored.get("result"), dict):
        return None, f"not a trial entry (a JSON {type(stored).__name__} without a result object)"
    result = stored["result"]
    if result.get("status") not in RESULT_KEYS:
        return None, f"its result's status is {result.get('status')!r}, not 'ok' or 'failed'"
    missing = sorted(RESULT_KEYS[result["status"]] - set(result))
    return (None, f"its result lacks {', '.join(missing)}") if missing else (stored, None)


class TrialCache:
    """One JSON file per trial in a DVC-tracked directory: its result, valid while the context is unchanged.
    A damaged file (empty, truncated, a merge conflict, not an entry) is reported in one line and its trial
    runs again; `put` replaces the file atomically."""

    def __init__(self, root: Path, fingerprint: str):
        self.root, self.fingerprint = Path(root), fingerprint
        if self.root.exists() and not self.root.is_dir():
            raise QuantpipeError(f"{self.root}: not a directory (the search's trial cache belongs there); remove it")
        self.root.mkdir(parents=True, exist_ok=True)
        for path in sweep_temporaries(self.root):
            log.warning(f"{path}: removed (a trial result whose write did not finish)")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The cached result of trial `key`, or None; something other than a file at its path is an error before
        the trial runs (its result could not be stored)."""
        path = self.path(key)
        if path.exists() and not path.is_file():
            raise QuantpipeError(f"{path}: not a file (the trial's cached result belongs there); remove it")
        if not path.is_file():
            return None
        stored, problem = read_entry(path)
        if problem:
            log.warning(f"{path}: {problem}; the trial runs again")
            return None
        return stored["result"] if stored.get("fingerprint") == self.fingerprint else None

    def put(self, key: str, result: dict) -> None:
        write_json(self.path(key), {"fingerprint": self.fingerprint, "result": result})
