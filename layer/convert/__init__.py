"""Model build: checkpoint → ONNX export → int8 quantization → accuracy gate → model directory.

Imports torch, transformers and onnx: only the ``clip-lambda build-model`` command and tests load it.
"""
