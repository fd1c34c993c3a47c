"""ONNX export of fine-tuned model folders (`bertforge export`): the graph, ONNX Runtime's optimizer, int8
quantization, and a verification against the PyTorch model. ONNX packages are optional (`bertforge[export]`),
so they are imported only when used."""

from __future__ import annotations

OPSET = 18  # the dynamo exporter's own default in torch 2.13
