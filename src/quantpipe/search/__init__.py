"""The search: trials of any registered kind, built and measured through the kinds' interface, each cached,
scored on a selection split and timed against fp32 ONNX; an accuracy-aware fallback; the winner."""
