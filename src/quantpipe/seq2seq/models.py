"""The models of the seq2seq pipeline: the two fp32 baselines and the int8 variants, name -> directory."""

from __future__ import annotations

from pathlib import Path

from quantpipe.params import Params

BASELINE = "pytorch_fp32"  # speed ratios and "identical outputs" are against it


def seq2seq_models(params: Params, base: Path, onnx: Path, quantized: Path) -> dict[str, Path]:
    return {
        BASELINE: Path(base),
        "onnx_fp32": Path(onnx),
        **{name: Path(quantized) / name for name in params.seq2seq.variants},
    }
