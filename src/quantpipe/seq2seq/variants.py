"""Build one seq2seq variant by its kind (`seq2seq.variants.<name>.kind`), from the fp32 model and its ONNX export:
ONNX Runtime dynamic int8 of the files, the export converted to OpenVINO IR (its weights optionally compressed to
int8 by NNCF), or the fp32 PyTorch model served under bf16 autocast. Each builder writes the model into `out_dir`
and returns its record for VARIANT_FILE, whose `serve` says how `quantpipe.seq2seq.measure` serves it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from quantpipe.config.seq2seq import (
    Seq2seqOpenvinoParams,
    Seq2seqOrtInt8Params,
    Seq2seqTorchParams,
    Seq2seqVariantParams,
)
from quantpipe.seq2seq.export import part_files
from quantpipe.seq2seq.graph import cross_attention_nodes, lm_head_nodes
from quantpipe.seq2seq.quantize import quantize_seq2seq

EXCLUSIONS = {"lm_head": lm_head_nodes, "cross_attention": cross_attention_nodes}


def build_ort_int8(name: str, variant: Seq2seqOrtInt8Params, base_dir: Path, onnx_dir: Path, out_dir: Path) -> dict:
    """Dynamic int8 of the variant's parts, the nodes of `exclude` left in fp32."""
    files = part_files(onnx_dir)
    nodes = sorted(
        {
            node
            for what in variant.exclude
            for part in variant.parts
            for file in files[part]
            for node in EXCLUSIONS[what](onnx_dir / file)
        }
    )
    resolved = quantize_seq2seq(
        onnx_dir,
        out_dir,
        variant.preset,
        variant.per_channel,
        variant.parts,
        nodes,
        f"seq2seq.variants.{name}",
        variant.quantize_embeddings,
    )
    return {"resolved": resolved, "excluded": nodes, "serve": {"engine": "onnxruntime"}}


def build_openvino(name: str, variant: Seq2seqOpenvinoParams, base_dir: Path, onnx_dir: Path, out_dir: Path) -> dict:
    """Each ONNX file converted to OpenVINO IR (`<file>.xml` and `.bin`, weights kept in fp32 on disk); with
    `weights: int8`, the files of `parts` compressed by `nncf.compress_weights` (INT8_ASYM, data-free)."""
    import openvino as ov

    out_dir.mkdir(parents=True, exist_ok=True)
    compressed = []
    for part, files in part_files(onnx_dir).items():
        for file in files:
            model = ov.convert_model(str(onnx_dir / file))
            if variant.weights == "int8" and part in variant.parts:
                import nncf

                model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
                compressed.append(file)
            ov.save_model(model, str(out_dir / file.replace(".onnx", ".xml")), compress_to_fp16=False)
    _copy_beside(onnx_dir, out_dir, lambda item: item.suffix != ".onnx" and not item.name.endswith(".onnx_data"))
    return {"resolved": {"compressed": compressed}, "serve": {"engine": "openvino", "precision": variant.precision}}


def build_pytorch(name: str, variant: Seq2seqTorchParams, base_dir: Path, onnx_dir: Path, out_dir: Path) -> dict:
    """The fp32 model's files, served by PyTorch under `autocast`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_beside(base_dir, out_dir, lambda item: item.name != "training.json")
    return {"serve": {"engine": "pytorch", "autocast": variant.autocast}}


BUILDERS: dict[str, Callable[..., dict]] = {
    "ort_int8": build_ort_int8,
    "openvino": build_openvino,
    "pytorch": build_pytorch,
}


def build_variant(name: str, variant: Seq2seqVariantParams, base_dir: Path, onnx_dir: Path, out_dir: Path) -> dict:
    """The variant built by its kind's builder into `out_dir`; returns its VARIANT_FILE record."""
    record = BUILDERS[variant.kind](name, variant, Path(base_dir), Path(onnx_dir), Path(out_dir))
    record["serve"].update(variant.serve_options())
    return {"params": variant.model_dump(), **record}


def _copy_beside(source: Path, out_dir: Path, keep: Callable[[Path], bool]) -> None:
    """The files of `source` that `keep` accepts (config, generation config, tokenizer) copied into `out_dir`."""
    for item in source.iterdir():
        if item.is_file() and keep(item):
            shutil.copy2(item, out_dir / item.name)
