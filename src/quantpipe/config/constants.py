"""Names the params schema allows and the modules reading them share: optimization levels, baselines, the ONNX
Runtime presets, the parts of a network."""

from __future__ import annotations

import re
from typing import Literal

OPT_LEVELS = ("none", "O1", "O2", "O3", "O4")
CPU_OPT_LEVELS = ("none", "O1", "O2", "O3")  # O4 is O3 plus fp16 for GPU: nothing to quantize on a CPU
BASELINES = {"pytorch_fp32": "pytorch", "onnx_fp32": "onnx"}  # name -> kind; their models come from export
# the seq2seq pipeline's, name -> (kind, its generate params): PyTorch with its decoder's key/value cache (what
# transformers does by default), the same weights recomputing the prefix at each step (the equal-terms baseline of
# an export without the cache), the fp32 export
SEQ2SEQ_BASELINES = {
    "pytorch_fp32": ("pytorch", {}),
    "pytorch_fp32_no_cache": ("pytorch", {"use_cache": False}),
    "pytorch_fp32_one_thread": ("pytorch", {"threads": 1}),  # a PyTorch user tries one thread too
    "onnx_fp32": ("onnx", {}),
}
SEQ2SEQ_BASELINE, SEQ2SEQ_NO_CACHE = "pytorch_fp32", "pytorch_fp32_no_cache"  # the ratios' denominators
SEQ2SEQ_FP32 = ("pytorch_fp32", "pytorch_fp32_one_thread")  # the answer is also divided by the faster of these
PRESETS = ("arm64", "avx2", "avx512", "avx512_vnni")  # Optimum's `AutoQuantizationConfig` presets
Preset = Literal[("auto", *PRESETS)]  # a variant's `preset` (ONNX Runtime int8 and seq2seq variants alike)
PART = re.compile(r"embeddings|head|layer\.\d+")  # the parts of a network the sensitivity analysis names
