"""Kind `dynamic`: ONNX Runtime dynamic int8 (activation ranges computed at run time), of a classifier's graph
or of a seq2seq export's files (as `optimum-cli onnxruntime quantize` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from quantpipe.config.constants import Preset
from quantpipe.config.seq2seq import LeanGenerateParams
from quantpipe.kinds.onnx import ServedByLeanOrt
from quantpipe.kinds.ort_int8 import OrtInt8Kind


class DynamicGenerateParams(LeanGenerateParams):
    """ONNX Runtime dynamic int8 of the exported seq2seq files (the kind a seq2seq variant without `kind` has)."""

    kind: Literal["dynamic"] = Field("dynamic", description="ONNX Runtime dynamic int8")
    preset: Preset = Field(
        "auto", description="`AutoQuantizationConfig` preset (arm64, avx2, avx512, avx512_vnni; auto)"
    )
    per_channel: bool = Field(False, description="weights per output channel (the reference's CLI: per tensor)")
    parts: list[Literal["encoder", "decoder"]] = Field(
        default_factory=lambda: ["encoder", "decoder"], min_length=1, description="files quantized (others stay fp32)"
    )
    exclude: list[Literal["lm_head", "cross_attention"]] = Field(
        default_factory=list, description="nodes left in fp32: the decoder's output projection, the cross attention"
    )
    quantize_embeddings: bool = Field(
        False, description="the embedding tables (`Gather`) of the quantized files in int8 too (fp32 otherwise)"
    )


class DynamicKind(ServedByLeanOrt, OrtInt8Kind):
    name = "dynamic"
    generate_params = DynamicGenerateParams

    def build_generate(
        self, name: str, variant: DynamicGenerateParams, base_dir: Path, onnx_dir: Path, out_dir: Path
    ) -> dict:
        """Dynamic int8 of the variant's parts, the nodes of `exclude` left in fp32."""
        from quantpipe.seq2seq.export import part_files
        from quantpipe.seq2seq.graph import EXCLUSIONS
        from quantpipe.seq2seq.quantize import quantize_seq2seq

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
        return {"resolved": resolved, "excluded": nodes}


KIND = DynamicKind()
