"""Dynamic int8 of a seq2seq export, file by file, as `optimum-cli onnxruntime quantize --<preset>` does it:
one ORTQuantizer per ONNX file, `AutoQuantizationConfig.<preset>(is_static=False, per_channel=...)`. The
quantized files keep the standard names, so ORTModelForSeq2SeqLM loads the directory as it is; a part not
quantized is copied in fp32. An optimized export (O1-O3: fused contrib operators, which Optimum's quantizer cannot
type) goes through ONNX Runtime's quantizer directly, with the same configuration."""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Sequence
from pathlib import Path

from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.io import read_onnx
from quantpipe.ort_quantize import quantize_embeddings, quantize_fused_dynamic, resolve_preset
from quantpipe.seq2seq.export import is_optimized, part_files
from quantpipe.seq2seq.graph import QUANTIZED_OPS, graphs, node_names, op_counts

PARTS = ("encoder", "decoder")


def quantize_seq2seq(
    onnx_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool = False,
    parts: Sequence[str] = PARTS,
    nodes_to_exclude: Sequence[str] = (),
    name: str = "seq2seq.variants.<name>",
    embeddings: bool = False,
) -> dict:
    """Write the int8 model into `out_dir` (plus config, generation config and tokenizer). `preset`: one of
    PRESETS or `auto` (the best for this CPU), resolved by `quantpipe.ort_quantize.resolve_preset` as the ONNX
    Runtime kinds' are; `parts`: which files are quantized; `name`: the variant named in messages; `embeddings`:
    their embedding tables in int8 too. Returns what was resolved: the preset and, per file, its count of
    quantized operators (0 for a file left in fp32)."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    files = part_files(onnx_dir)
    missing = [f for part in files.values() for f in part if not (onnx_dir / f).is_file()]
    if missing:
        raise QuantpipeError(f"{onnx_dir}: {', '.join(missing)} not found (export the seq2seq model first)")
    for file in (file for part in files.values() for file in part):
        read_onnx(onnx_dir / file, load_external_data=False)
    preset = resolve_preset(name, preset, cpu_info())
    if not parts or set(parts) - set(PARTS):
        raise QuantpipeError(f"{name}.parts: {list(parts)}: give one or both of {list(PARTS)}")
    quantized = [file for part in PARTS if part in parts for file in files[part]]
    check_nodes_to_exclude(name, nodes_to_exclude, [onnx_dir / f for f in quantized])
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / "_quantized"
    counts, optimized = {}, is_optimized(onnx_dir)
    for file in (file for part in files.values() for file in part):
        if file in quantized:
            config = getattr(AutoQuantizationConfig, preset)(
                is_static=False, per_channel=per_channel, nodes_to_exclude=list(nodes_to_exclude)
            )
            if optimized:
                quantize_fused_dynamic(onnx_dir / file, out_dir / file, config, {"EnableSubgraph": True})
            else:
                ORTQuantizer.from_pretrained(onnx_dir, file_name=file).quantize(
                    quantization_config=config, save_dir=scratch
                )
                shutil.move(scratch / file.replace(".onnx", "_quantized.onnx"), out_dir / file)
            check_every_graph_quantized(name, onnx_dir / file, out_dir / file, nodes_to_exclude)
            if embeddings:
                quantize_embeddings(out_dir / file)
        else:
            shutil.copy2(onnx_dir / file, out_dir / file)
        counts[file] = sum(op_counts(out_dir / file, QUANTIZED_OPS).values())
    shutil.rmtree(scratch, ignore_errors=True)
    for item in onnx_dir.iterdir():  # config, generation config and tokenizer travel with the model
        if item.is_file() and item.suffix != ".onnx":
            shutil.copy2(item, out_dir / item.name)
    return {"preset": preset, "quantized_ops": counts}


def check_nodes_to_exclude(name: str, nodes: Sequence[str], paths: list[Path]) -> None:
    """Names that are no node of the files quantized (If branches included) would be ignored silently."""
    if not nodes:
        return
    known = set().union(*(node_names(path) for path in paths))
    unknown = [node for node in nodes if node not in known]
    if unknown:
        close = sorted({match for node in unknown for match in difflib.get_close_matches(node, known, n=2)})
        raise QuantpipeError(
            f"{name}.nodes_to_exclude: {unknown} not in {', '.join(p.name for p in paths)}"
            + (f" (close: {close})" if close else "")
        )


def check_every_graph_quantized(name: str, source: Path, out: Path, excluded: Sequence[str]) -> None:
    """Each graph that had MatMuls to quantize (both If branches of a merged decoder) holds quantized operators:
    ONNX Runtime quantizes subgraphs only when asked to (`EnableSubgraph`, which ORTQuantizer sets)."""
    expected = [
        key
        for key, graph in graphs(source)
        if any(n.op_type == "MatMul" and n.name not in excluded for n in graph.node)
    ]
    counts = op_counts(out, QUANTIZED_OPS)
    fp32 = [key for key in expected if not counts.get(key)]
    if fp32:
        raise QuantpipeError(f"{name}: {out.name}: graphs {fp32} were left in fp32 by the quantizer")
