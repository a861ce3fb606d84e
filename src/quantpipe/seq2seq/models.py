"""The models of the seq2seq pipeline: the fp32 baselines and the int8 variants, name -> what to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantpipe.config import Params
from quantpipe.config.constants import SEQ2SEQ_BASELINES

# BASELINE generates as transformers does by default, with the decoder's key/value cache; NO_CACHE, the same weights,
# recomputes the prefix at each step, as an ONNX decoder exported without the cache does: the equal-terms baseline
# of such exports (the warm-started BERT-to-BERT's)
BASELINE, NO_CACHE, ONNX_FP32 = SEQ2SEQ_BASELINES


@dataclass(frozen=True)
class Seq2seqModel:
    path: Path  # a PyTorch model directory or an exported/quantized ONNX directory
    use_cache: bool = True  # PyTorch: generate with the key/value cache (ONNX: as its files were exported)


def seq2seq_models(params: Params, base: Path, onnx: Path, quantized: Path) -> dict[str, Seq2seqModel]:
    return {
        BASELINE: Seq2seqModel(Path(base)),
        NO_CACHE: Seq2seqModel(Path(base), use_cache=False),
        ONNX_FP32: Seq2seqModel(Path(onnx)),
        **{name: Seq2seqModel(Path(quantized) / name) for name in params.seq2seq.variants},
    }
