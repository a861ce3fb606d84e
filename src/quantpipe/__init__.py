"""quantpipe: export, optimize and quantize Hugging Face classifiers with ONNX Runtime, and measure them."""

__version__ = "0.1.0"
