"""Kind `dynamic`: ONNX Runtime dynamic int8 (activation ranges computed at run time)."""

from __future__ import annotations

from quantpipe.kinds.ort_int8 import OrtInt8Kind


class DynamicKind(OrtInt8Kind):
    name = "dynamic"


KIND = DynamicKind()
