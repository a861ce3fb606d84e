"""Sensitivity of one quantized variant: quantize one operator type, then one layer, at a time.

Each row is a model in which only that part is quantized (everything else stays fp32), scored and timed
on the same data in the same process as the fp32 graph and the fully quantized variant, so the rows show
where the accuracy goes and where the speed comes from, and whether the parts add up to the whole.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score
from tqdm.auto import tqdm

from quantpipe.config.sections import EvaluateParams, SensitivityParams
from quantpipe.io import read_onnx
from quantpipe.kinds.onnx import OnnxClassifier
from quantpipe.kinds.ort_int8 import (
    OrtQuantParams,
    graph_to_quantize,
    quantization_config,
    quantize_variant,
    with_resolved_preset,
)
from quantpipe.ort_quantize import operator_names
from quantpipe.side_by_side import time_side_by_side

LAYER = re.compile(r"layer\.(\d+)[/.]")


def node_part(node) -> str:
    """`embeddings`, `layer.<i>` or `head` (pooler and classifier), from the node's name or outputs."""
    for name in (node.name, *node.output):
        found = LAYER.search(name)
        if found:
            return f"layer.{found.group(1)}"
    if any("embeddings" in name for name in (node.name, *node.output)):
        return "embeddings"
    return "head"


def sensitivity_parts(model_path: Path, operators: list[str]) -> list[tuple[str, str, list[str] | None, list[str]]]:
    """(kind, part, operators, nodes) per row: every quantized operator type present in the graph alone,
    then every part of the network alone with all the variant's operator types."""
    nodes = [n for n in read_onnx(model_path, load_external_data=False).graph.node if n.op_type in operators]
    counts = Counter(n.op_type for n in nodes)
    rows = [("operator", op, [op], [n.name for n in nodes if n.op_type == op]) for op in operators if counts[op]]
    parts = sorted({node_part(n) for n in nodes}, key=lambda p: (p != "embeddings", p == "head", p))
    rows += [("layer", part, None, [n.name for n in nodes if node_part(n) == part]) for part in parts]
    return rows


def score_side_by_side(
    models: dict, tokenizer, texts: list[str], labels: np.ndarray, cfg: EvaluateParams, repeats: int
) -> dict[str, dict]:
    """Accuracy and model-only samples/s (median of `repeats` rounds) per ONNX model, all timed in this
    process in rounds alternating between them (`quantpipe.side_by_side`)."""
    classifiers = {
        name: OnnxClassifier(Path(path), cfg.threads, cfg.graph_optimization, cfg.execution_mode)
        for name, path in models.items()
    }
    timed = time_side_by_side(classifiers, tokenizer, texts, cfg, repeats, desc="timed passes")
    return {
        name: {
            "accuracy": float(accuracy_score(labels, t["labels"])),
            "samples_per_second": float(np.median(t["model_samples_per_second"])),
        }
        for name, t in timed.items()
    }


def sensitivity_table(
    variant_name: str,
    variant: OrtQuantParams,
    model_dir: Path,
    calibration_dir: Path,
    tokenizer,
    texts: list[str],
    labels: np.ndarray,
    cfg: EvaluateParams,
    sens: SensitivityParams,
) -> list[dict]:
    """One row per part (plus `fp32` and `all`): accuracy, its change and the model-only speed ratio
    against the fp32 graph the variant starts from."""
    variant = with_resolved_preset(variant_name, variant)
    fp32_graph = graph_to_quantize(variant, model_dir, calibration_dir)
    parts = sensitivity_parts(fp32_graph, operator_names(quantization_config(variant)))
    all_nodes = sum(len(nodes) for kind, _, _, nodes in parts if kind == "operator")
    plan = [("all", "all", None, None), *parts]
    rows = [{"kind": "none", "part": "fp32", "nodes": 0}]
    rows += [
        {"kind": kind, "part": part, "nodes": all_nodes if nodes is None else len(nodes)}
        for kind, part, _, nodes in plan
    ]
    models = {("none", "fp32"): fp32_graph}
    with tempfile.TemporaryDirectory(prefix="sensitivity-") as scratch:
        for i, (kind, part, ops, nodes) in enumerate(
            tqdm(plan, desc=f"quantizing parts of {variant_name}", unit="model")
        ):
            one = variant if ops is None else variant.model_copy(update={"operators": ops})
            out = Path(scratch) / str(i)
            out.mkdir()
            models[kind, part] = quantize_variant(
                variant_name, one, model_dir, calibration_dir, out, nodes_to_quantize=nodes if kind == "layer" else None
            )
        scores = score_side_by_side(models, tokenizer, texts, labels, cfg, sens.repeats)
    fp32 = scores["none", "fp32"]
    for row in rows:
        row.update(scores[row["kind"], row["part"]])
        row["accuracy_delta"] = row["accuracy"] - fp32["accuracy"]
        row["speed_ratio"] = row["samples_per_second"] / fp32["samples_per_second"]
    return rows
