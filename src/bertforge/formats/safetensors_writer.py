"""Write a safetensors file one tensor at a time: the bytes `safetensors.torch.save_file` writes for the same
tensors, without holding them all.

Layout (safetensors' ``tensor.rs``): the header's length (uint64, little-endian), the header (compact JSON:
``__metadata__`` first, then each tensor's ``{"dtype","shape","data_offsets"}`` in file order, padded with
spaces to a multiple of 8 bytes), then the tensors' bytes back to back, in C order. File order is by dtype,
the widest-aligned first (safetensors' `Dtype` enum, descending), then by name.

A tensor is read only when its turn comes and may be any view (a transposed memory map, another dtype): it
is written from where it lies when it already has the file's layout, else through one reused staging
buffer. So converting a checkpoint costs one tensor of memory, not a second copy of the model.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

# safetensors' dtype names, in the order of its `Dtype` enum (file order is this order, descending).
_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
}
_RANK = {dtype: rank for rank, dtype in enumerate(_DTYPES)}


def _no_op() -> None:
    return None


@dataclass(frozen=True)
class PendingTensor:
    """One tensor of a file being written: what the header says, and how to get its values in its turn."""

    dtype: torch.dtype  # as written
    shape: tuple[int, ...]
    read: Callable[[], torch.Tensor]  # any strides and dtype; cast and laid out in C order when written
    written: Callable[[], None] = _no_op  # called once its bytes are in the file (e.g. to unmap them)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def file_order(tensors: Mapping[str, PendingTensor]) -> list[str]:
    """The order safetensors lays tensors out in: widest dtype first, then by name."""
    return sorted(tensors, key=lambda name: (-_RANK[tensors[name].dtype], name))


def header(tensors: Mapping[str, PendingTensor], metadata: dict[str, str] | None = None) -> bytes:
    """The length-prefixed, space-padded JSON header for `tensors` (at most one metadata key: safetensors
    writes several in hash order)."""
    entries: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in file_order(tensors):
        tensor = tensors[name]
        entries[name] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(
    path: str | Path, tensors: Mapping[str, PendingTensor], metadata: dict[str, str] | None = None
) -> None:
    """Write `tensors` to `path` (created or truncated), reading each only when it is written."""
    unknown = {str(t.dtype) for t in tensors.values() if t.dtype not in _DTYPES}
    if unknown:
        raise ValueError(f"safetensors writer: unsupported dtype(s) {', '.join(sorted(unknown))}")
    staging = torch.empty(0, dtype=torch.uint8)
    with open(path, "wb") as f:
        f.write(header(tensors, metadata))
        for name in file_order(tensors):
            pending = tensors[name]
            value = pending.read()
            if tuple(value.shape) != pending.shape:
                raise ValueError(f"safetensors writer: {name} is {tuple(value.shape)}, its header says {pending.shape}")
            if value.dtype != pending.dtype or not value.is_contiguous():
                if staging.numel() < pending.nbytes:
                    staging = torch.empty(pending.nbytes, dtype=torch.uint8)
                target = staging[: pending.nbytes].view(pending.dtype).view(pending.shape)
                target.copy_(value)  # the cast and the transpose, in torch's blocked copy
                value = target
            if pending.nbytes:
                f.write(value.reshape(-1).view(torch.uint8).numpy().data)
            pending.written()
