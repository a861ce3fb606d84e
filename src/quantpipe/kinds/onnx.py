"""Kind `onnx`: the fp32 ONNX export (baseline `onnx_fp32` of both tasks), and the ONNX Runtime sessions every
ONNX kind runs: a classifier's, and a seq2seq export's under the lean loop (`quantpipe.seq2seq.lean`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.config.seq2seq import GenerateServing, LeanGenerateParams
from quantpipe.errors import QuantpipeError
from quantpipe.export import MODEL_FILE
from quantpipe.inference import Replicas, threads_per_stream
from quantpipe.io import check_model_dir, loading
from quantpipe.kinds.base import Kind

GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxClassifier:
    """An ONNX Runtime session over `model.onnx`, with the CPU session options that matter from params."""

    def __init__(
        self, model_path: Path, threads: int, graph_optimization: str = "all", execution_mode: str = "sequential"
    ):
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise QuantpipeError(f"{model_path}: ONNX model not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_optimization])
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        with loading(model_path, "ONNX model"):
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.input_names}
        return self.session.run(None, feed)[0]


def load_onnx(model_dir: Path, variant: VariantParams, cfg: EvaluateParams) -> OnnxClassifier | Replicas:
    """The session of `model_dir/model.onnx` with the evaluate section's session options; with `streams` > 1,
    that many sessions sharing the variant's threads, each called from its own thread."""
    threads = variant.runtime_threads(cfg)
    path = Path(model_dir) / MODEL_FILE
    if variant.streams == 1:
        return OnnxClassifier(path, threads, cfg.graph_optimization, cfg.execution_mode)
    per_stream = threads_per_stream(threads, variant.streams)
    return Replicas(
        [OnnxClassifier(path, per_stream, cfg.graph_optimization, cfg.execution_mode) for _ in range(variant.streams)]
    )


def ort_hub_loading(variant: VariantParams, cfg: EvaluateParams) -> list[str]:
    """Optimum's `ORTModelForSequenceClassification` on the session options the measurement used (one session:
    with `streams` > 1, that many were measured, each on its share of the threads, called from its own thread)."""
    lines = [
        "import onnxruntime as ort",
        "from optimum.onnxruntime import ORTModelForSequenceClassification",
        "",
        "options = ort.SessionOptions()",
        f"options.intra_op_num_threads = {threads_per_stream(variant.runtime_threads(cfg), variant.streams)}",
        "options.inter_op_num_threads = 1",
        f"options.graph_optimization_level = ort.GraphOptimizationLevel.{GRAPH_LEVELS[cfg.graph_optimization]}",
    ]
    if cfg.execution_mode == "parallel":
        lines.append("options.execution_mode = ort.ExecutionMode.ORT_PARALLEL")
    if variant.streams > 1:
        lines.append(f"# measured as {variant.streams} such sessions, each called from its own thread")
    return [*lines, "model = ORTModelForSequenceClassification.from_pretrained(path, session_options=options)"]


class OnnxParams(VariantParams):
    """The fp32 ONNX model as exported (the export stage builds it)."""

    kind: Literal["onnx"] = Field(description="`onnx`: the fp32 export, run by ONNX Runtime")


class ServedByLeanOrt:
    """`load_generate` of the kinds whose seq2seq models are ONNX files run by ONNX Runtime (onnx, dynamic)."""

    def load_generate(self, model_dir: Path, variant: LeanGenerateParams, serving: GenerateServing):
        """The export under the lean loop (neither torch nor transformers imported): one set of sessions per
        stream, each on its share of the variant's threads (else the serving's)."""
        from quantpipe.seq2seq.lean import LeanSeq2seq, ort_sessions

        served = variant.served_by(serving.threads)
        check_model_dir(model_dir)
        with loading(model_dir, "seq2seq ONNX model"):
            per_stream = threads_per_stream(served["threads"], served["streams"])
            sessions = [ort_sessions(model_dir, per_stream) for _ in range(served["streams"])]
            return LeanSeq2seq(model_dir, sessions, serving.max_length, serving.keep_source_words)


class OnnxGenerateParams(LeanGenerateParams):
    """The fp32 seq2seq export as it is (the seq2seq_export stage builds it)."""

    kind: Literal["onnx"] = Field("onnx", description="`onnx`: the fp32 export, run by ONNX Runtime")


class OnnxKind(ServedByLeanOrt, Kind):
    name = "onnx"
    baseline = True
    hub_class = "optimum.onnxruntime.ORTModelForSequenceClassification"
    params = OnnxParams
    generate_params = OnnxGenerateParams

    def load(self, model_dir: Path, variant: VariantParams, cfg: EvaluateParams) -> OnnxClassifier | Replicas:
        return load_onnx(model_dir, variant, cfg)

    def hub_loading(self, variant: VariantParams, cfg: EvaluateParams) -> list[str]:
        return ort_hub_loading(variant, cfg)


KIND = OnnxKind()
