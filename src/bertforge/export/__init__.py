"""ONNX export of fine-tuned model folders (`bertforge export`): the graph, ONNX Runtime's optimizer, int8
quantization, and a verification against the PyTorch model. ONNX packages are optional (`bertforge[export]`),
so they are imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

from bertforge.errors import BertforgeError

OPSET = 18  # the dynamo exporter's own default in torch 2.13


def need(module: str) -> ModuleType:
    """Import an optional ONNX package, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BertforgeError(f"{exc.name or module} is not installed; pip install 'bertforge[export]'") from None
