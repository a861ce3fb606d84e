"""Kind `static`: ONNX Runtime static int8 with the activation ranges of a calibrate stage."""

from __future__ import annotations

from quantpipe.kinds.ort_int8 import OrtInt8Kind


class StaticKind(OrtInt8Kind):
    name = "static"
    calibrated = True


KIND = StaticKind()
