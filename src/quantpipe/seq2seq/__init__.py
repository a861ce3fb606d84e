"""Seq2seq (text2text-generation) models: ONNX export with or without a decoder cache, dynamic int8 per
encoder/decoder file, PyTorch and ONNX Runtime generation, and generation quality (ROUGE-L)."""
