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

from quantpipe.inference import OnnxClassifier, predict
from quantpipe.params import EvaluateParams, SensitivityParams, VariantParams
from quantpipe.quantization import _op_names, graph_to_quantize, quantization_config, quantize_variant

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
    import onnx

    nodes = [n for n in onnx.load(str(model_path), load_external_data=False).graph.node if n.op_type in operators]
    counts = Counter(n.op_type for n in nodes)
    rows = [("operator", op, [op], [n.name for n in nodes if n.op_type == op]) for op in operators if counts[op]]
    parts = sorted({node_part(n) for n in nodes}, key=lambda p: (p != "embeddings", p == "head", p))
    rows += [("layer", part, None, [n.name for n in nodes if node_part(n) == part]) for part in parts]
    return rows


def _score(model_path: Path, tokenizer, texts: list[str], labels: np.ndarray, cfg: EvaluateParams,
           repeats: int) -> dict:
    classifier = OnnxClassifier(model_path, cfg.threads, cfg.graph_optimization, cfg.execution_mode)
    predict(classifier, tokenizer, texts[: cfg.batch_size * 2], cfg.batch_size, cfg.max_length)  # warm-up
    runs = [predict(classifier, tokenizer, texts, cfg.batch_size, cfg.max_length) for _ in range(repeats)]
    return {"accuracy": float(accuracy_score(labels, runs[0].labels)),
            "samples_per_second": float(np.median([len(texts) / r.model_seconds for r in runs]))}


def sensitivity_table(variant_name: str, variant: VariantParams, model_dir: Path, calibration_dir: Path,
                      tokenizer, texts: list[str], labels: np.ndarray, cfg: EvaluateParams,
                      sens: SensitivityParams) -> list[dict]:
    """One row per part (plus `fp32` and `all`): accuracy, its change and the model-only speed ratio
    against the fp32 graph the variant starts from."""
    fp32_graph = graph_to_quantize(variant, model_dir, calibration_dir)
    operators = _op_names(quantization_config(variant))
    parts = sensitivity_parts(fp32_graph, operators)
    rows = [{"kind": "none", "part": "fp32", "nodes": 0, **_score(fp32_graph, tokenizer, texts, labels, cfg,
                                                                  sens.repeats)}]
    plan = [("all", "all", None, None)] + parts
    with tempfile.TemporaryDirectory(prefix="sensitivity-") as scratch:
        for i, (kind, part, ops, nodes) in enumerate(tqdm(plan, desc=f"sensitivity of {variant_name}", unit="model")):
            one = variant if ops is None else variant.model_copy(update={"operators": ops})
            out = Path(scratch) / str(i)
            out.mkdir()
            path = quantize_variant(variant_name, one, model_dir, calibration_dir, out,
                                    nodes_to_quantize=None if kind != "layer" else nodes)
            n_nodes = sum(len(p[3]) for p in parts if p[0] == "operator") if kind == "all" else len(nodes)
            rows.append({"kind": kind, "part": part, "nodes": n_nodes,
                         **_score(path, tokenizer, texts, labels, cfg, sens.repeats)})
    base = rows[0]
    for row in rows:
        row["accuracy_delta"] = row["accuracy"] - base["accuracy"]
        row["speed_ratio"] = row["samples_per_second"] / base["samples_per_second"]
    return rows
