"""Where a head's forward pass runs. A backend takes a padded batch of NumPy arrays (`input_ids`,
`token_type_ids`, `attention_mask`, each (B, S) int64) and returns the head's outputs by name as NumPy
arrays (e.g. `logits` (B, C) or (B, S, C), `start_logits` (B, S)). Task code sees only this, so another
runtime (ONNX Runtime) is one more backend here, not a change to any task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from bertforge.errors import BertforgeError

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


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

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(batch[k]).to(self.device) for k in INPUT_NAMES})
        return {
            f.name: value.float().cpu().numpy()
            for f in dataclasses.fields(out)
            if isinstance(value := getattr(out, f.name), torch.Tensor) and not f.name.endswith("loss")
        }


BACKENDS = {"torch": TorchBackend.load}
