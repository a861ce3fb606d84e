"""Read an ONNX graph with its subgraphs (a merged decoder's two If branches): node names, quantized
operators, and the nodes worth leaving in fp32 (the LM head, the cross-attention)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from quantpipe.io import read_onnx

# operators of ONNX Runtime's dynamic int8 (QOperator) graphs
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QAttention", "ConvInteger")
# cross-attention scopes in exported node names: T5 and mT5, BERT-like decoders, BART-like models
CROSS_ATTENTION_SCOPES = ("EncDecAttention", "crossattention", "encoder_attn")


def graphs(model_path: Path) -> Iterator[tuple[str, object]]:
    """(key, graph) for the main graph and every subgraph, depth first; a subgraph's key names the node and
    attribute holding it (`main/optimum::if.then_branch`)."""
    import onnx

    def walk(graph, key: str):
        yield key, graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g, f"{key}/{node.name}.{attr.name}")

    yield from walk(read_onnx(model_path, load_external_data=False).graph, "main")


def node_names(model_path: Path) -> set[str]:
    """Every node name, subgraphs included."""
    return {node.name for _, graph in graphs(model_path) for node in graph.node}


def op_counts(model_path: Path, ops: tuple[str, ...]) -> dict[str, int]:
    """How many nodes of the types `ops` each graph holds, by graph key."""
    return {key: sum(node.op_type in ops for node in graph.node) for key, graph in graphs(model_path)}


def lm_head_nodes(model_path: Path) -> list[str]:
    """The MatMul computing the `logits` output in each graph that produces it (one per If branch of a merged
    decoder), found by walking back from `logits` through the ops after it (a bias Add, ...)."""
    found = []
    for _, graph in graphs(model_path):
        producer = {out: node for node in graph.node for out in node.output}
        frontier = [producer["logits"]] if "logits" in producer else []
        while frontier:
            node = frontier.pop(0)
            if node.op_type == "MatMul":
                found.append(node.name)
                break
            frontier += [producer[name] for name in node.input if name in producer]
    return sorted(set(found))


def cross_attention_nodes(model_path: Path) -> list[str]:
    """The MatMuls of the decoder's cross-attention (projections and scores), by their exported scope name."""
    return sorted(
        {
            node.name
            for _, graph in graphs(model_path)
            for node in graph.node
            if node.op_type == "MatMul" and any(scope in node.name for scope in CROSS_ATTENTION_SCOPES)
        }
    )


EXCLUSIONS = {"lm_head": lm_head_nodes, "cross_attention": cross_attention_nodes}  # `exclude` names -> their nodes
