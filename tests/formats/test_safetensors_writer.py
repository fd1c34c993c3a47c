"""The streaming safetensors writer against safetensors' own `save_file`: the same bytes for the same tensors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from bertforge.formats.safetensors_writer import PendingTensor, write_safetensors


def pending(value: torch.Tensor, dtype: torch.dtype | None = None, events: list | None = None, name: str = ""):
    """`value` to be written as `dtype`, logging when it is read and when it is written."""

    def read():
        if events is not None:
            events.append(("read", name))
        return value

    def written():
        if events is not None:
            events.append(("written", name))

    return PendingTensor(dtype or value.dtype, tuple(value.shape), read, written)


def every_dtype() -> dict[str, torch.Tensor]:
    """Names out of order and every dtype the writer knows, so both sort keys (dtype, then name) matter."""
    g = torch.Generator().manual_seed(0)
    floats = torch.randn(3, 5, generator=g)
    return {
        "z.f32": floats,
        "a.f32": floats[:2].clone(),
        "m.f64": floats.double(),
        "b.f16": floats.half(),
        "y.bf16": floats.bfloat16(),
        "c.i64": torch.arange(7),
        "x.i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "d.i16": torch.arange(4, dtype=torch.int16),
        "w.i8": torch.arange(-3, 3, dtype=torch.int8),
        "e.u8": torch.arange(9, dtype=torch.uint8),
        "v.bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "é.unicode": torch.ones(2),
    }


@pytest.mark.parametrize("metadata", [{"format": "pt"}, None])
def test_same_bytes_as_save_file(tmp_path, metadata):
    tensors = every_dtype()
    save_file(tensors, tmp_path / "theirs.safetensors", metadata=metadata)
    events = []
    write_safetensors(
        tmp_path / "ours.safetensors", {k: pending(v, events=events, name=k) for k, v in tensors.items()}, metadata
    )
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()
    # one tensor at a time: each is read only once the one before it is written, in the file's order
    with open(tmp_path / "theirs.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    order = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    assert events == [(what, name) for _, name in order for what in ("read", "written")]


def test_views_and_other_dtypes_are_laid_out_and_cast(tmp_path):
    """A transposed view is written in C order, a float16 source cast to the header's float32, as torch's
    `.contiguous()` and `.to()` would make them."""
    g = torch.Generator().manual_seed(1)
    kernel = torch.randn(4, 6, generator=g)
    half = torch.randn(5, generator=g).half()
    save_file(
        {"k": kernel.t().contiguous(), "h": half.to(torch.float32)}, tmp_path / "theirs.safetensors", metadata=None
    )
    write_safetensors(tmp_path / "ours.safetensors", {"k": pending(kernel.t()), "h": pending(half, torch.float32)})
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()


def test_a_tensor_unlike_its_header_is_refused(tmp_path):
    wrong = PendingTensor(torch.float32, (2, 3), lambda: torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x is \(3, 2\), its header says \(2, 3\)"):
        write_safetensors(tmp_path / "x.safetensors", {"x": wrong})
