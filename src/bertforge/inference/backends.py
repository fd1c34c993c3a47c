"""Where a head's forward pass runs. A backend takes a padded batch of NumPy arrays (`input_ids`,
`token_type_ids`, `attention_mask`, each (B, S) int64) and returns the head's outputs by name as NumPy
arrays (e.g. `logits` (B, C) or (B, S, C), `start_logits` (B, S)). Task code sees only this, so another
runtime (ONNX Runtime, `OnnxBackend`) is one more backend here, not a change to any task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.extras import need

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
# An exported folder's graphs, with Optimum's names: the portable one (standard ONNX operators: any runtime),
# ONNX Runtime's optimized one (its fused com.microsoft operators), and its int8 quantization.
ONNX_FILE, OPTIMIZED_FILE, QUANTIZED_FILE = "model.onnx", "model_optimized.onnx", "model_quantized.onnx"
FASTEST_FIRST = (QUANTIZED_FILE, OPTIMIZED_FILE, ONNX_FILE)


def named_outputs(out) -> dict[str, torch.Tensor]:
    """A head's output dataclass -> its prediction tensors by field name (losses and loss terms left out).
    The ONNX graph's outputs are these names too, so every backend returns the same ones."""
    return {
        f.name: value
        for f in dataclasses.fields(out)
        if isinstance(value := getattr(out, f.name), torch.Tensor) and not f.name.endswith("loss")
    }


class TorchBackend:
    """A PyTorch head in inference mode (no autograd bookkeeping), on one device."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None):
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @classmethod
    def load(cls, folder: Path, head: type, device: str = "cpu", threads: int | None = None) -> TorchBackend:
        if threads:
            torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise BertforgeError("--device cuda, but PyTorch sees no CUDA device")
        return cls(head.from_pretrained(folder).to(device).eval(), device)

    @property
    def dtype(self) -> str:
        """The weights' type, as TEI's /info names it ("float32", "float16")."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(batch[k]).to(self.device) for k in INPUT_NAMES})
        return {name: value.float().cpu().numpy() for name, value in named_outputs(out).items()}


class OnnxBackend:
    """An exported model (`bertforge export`) in one ONNX Runtime session, created once, on the CPU."""

    def __init__(self, path: Path, threads: int | None = None):
        ort = need("onnxruntime")
        if not path.is_file():
            raise BertforgeError(f"{path.parent}: no {path.name}; export the model first (bertforge export)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (the physical cores)
        options.inter_op_num_threads = 1
        state = ort.capi.onnxruntime_pybind11_state
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except (state.InvalidProtobuf, state.InvalidArgument, state.InvalidGraph, state.Fail, state.NoModel) as exc:
            reason = str(exc).split(" failed:", 1)[-1].strip()  # after "[ONNXRuntimeError] : 7 : ... Load model from"
            raise BertforgeError(
                f"{path}: not a readable ONNX model ({reason}); export the model again (bertforge export)"
            ) from None
        self.path = path
        self.dtype = "int8" if path.name == QUANTIZED_FILE else "float32"  # the weights', for /info
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def load(cls, folder: Path, head: type, device: str = "cpu", threads: int | None = None) -> OnnxBackend:
        """The fastest graph the folder holds: int8, else ONNX Runtime's optimized one, else the portable one."""
        if device != "cpu":
            raise BertforgeError(f"--backend onnx runs on the CPU; --device {device} is for --backend torch")
        folder = Path(folder)
        path = next((folder / name for name in FASTEST_FIRST if (folder / name).is_file()), folder / ONNX_FILE)
        return cls(path, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {name: batch[name] for name in self.inputs})
        return dict(zip(self.outputs, values))


BACKENDS = {"torch": TorchBackend.load, "onnx": OnnxBackend.load}
