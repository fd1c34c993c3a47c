"""MindSpore .ckpt reading and writing, against real files written by MindSpore.

The fixtures and their .npz expectations (what mindspore.load_checkpoint returned) come from
scripts/make_mindspore_fixtures.py; MindSpore itself is not needed here.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bertforge.errors import BertforgeError
from bertforge.formats import mindspore_ckpt
from bertforge.formats.mindspore_ckpt import (
    read_mindspore_checkpoint,
    write_mindspore_checkpoint,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mindspore"
REAL_CHECKPOINTS = ["bert_tiny", "nezha_tiny", "dtypes_split_crc"]


def expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as npz:
        return {key: npz[key] for key in npz.files}


def assert_same(actual: dict[str, np.ndarray], wanted: dict[str, np.ndarray]) -> None:
    assert list(actual) == list(wanted)
    for key, value in wanted.items():
        assert actual[key].dtype == value.dtype, key
        assert actual[key].shape == value.shape, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


# A few protobuf pieces for hand-built files (layouts MindSpore does not write but protobuf allows).
def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def dims(*values: int) -> bytes:
    return b"".join(varint(1 << 3) + varint(value) for value in values)  # unpacked, as MindSpore writes them


def record(tag: str, tensor: bytes) -> bytes:
    return field(1, field(1, tag.encode()) + field(2, tensor))


def float32_tensor(values: np.ndarray, dims: bytes) -> bytes:
    return dims + field(2, b"Float32") + field(3, values.astype("<f4").tobytes())


# --- reading MindSpore's own files ------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_CHECKPOINTS)
def test_reads_exactly_what_mindspore_loads(name):
    assert_same(read_mindspore_checkpoint(FIXTURES / f"{name}.ckpt"), expected(name))


def test_model_zoo_names_shapes_and_training_state():
    bert = read_mindspore_checkpoint(FIXTURES / "bert_tiny.ckpt")
    assert bert["bert.bert.bert_embedding_lookup.embedding_table"].shape == (128, 32)
    assert bert["bert.bert.bert_encoder.layers.1.intermediate.weight"].shape == (64, 32)
    assert bert["bert.cls2.dense.weight"].shape == (2, 32)
    assert bert["global_step"].dtype == np.int32 and bert["global_step"].shape == (1,)
    assert bert["loss_scale"].shape == ()  # a scalar: no dims in the file
    assert bert["epoch_num"].dtype == np.int64
    assert bert["fp16_probe.bert.cls2.dense.weight"].dtype == np.float16
    assert bert["bert.bert.dense.weight"].flags.writeable
    nezha = read_mindspore_checkpoint(FIXTURES / "nezha_tiny.ckpt")
    layer = "bert.bert.bert_encoder.layers.0.attention.attention"
    assert nezha[f"{layer}._generate_relative_positions_embeddings.embeddings_table"].shape == (33, 8)
    assert not any("relative" in key for key in bert)


def test_split_tensor_and_every_dtype():
    raw = (FIXTURES / "dtypes_split_crc.ckpt").read_bytes()
    assert raw.count(b"split.float32") == 8  # MindSpore wrote it as 8 records of one tag
    tensors = read_mindspore_checkpoint(FIXTURES / "dtypes_split_crc.ckpt")
    assert tensors["split.float32"].shape == (64, 32)
    assert tensors["bfloat16"].dtype == np.float32  # widened, exactly
    assert tensors["note"] == np.array("MindSpore string entry")
    dtypes = {str(array.dtype) for array in tensors.values()}
    assert {"float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
            "uint64", "bool"} <= dtypes  # fmt: skip


def test_accepts_packed_dims_unknown_fields_and_old_style_scalars(tmp_path):
    values = np.arange(6, dtype=np.float32)
    packed = field(1, varint(2) + varint(3))
    unknown = varint(9 << 3 | 0) + varint(5) + field(10, b"future")  # fields a newer MindSpore might add
    old_scalar = dims(0)  # dims [0] with one element: a scalar, as MindSpore's loader reads it
    path = tmp_path / "handmade.ckpt"
    path.write_bytes(
        record("packed", float32_tensor(values, packed) + unknown)
        + record("scalar", float32_tensor(np.array([2.5]), old_scalar))
    )
    tensors = read_mindspore_checkpoint(path)
    np.testing.assert_array_equal(tensors["packed"], values.reshape(2, 3))
    assert tensors["scalar"].shape == () and tensors["scalar"] == 2.5


# --- writing ------------------------------------------------------------------------------------------


def test_writer_output_is_byte_identical_to_mindspore(tmp_path):
    out = tmp_path / "bert_tiny.ckpt"
    write_mindspore_checkpoint(out, expected("bert_tiny"))
    assert out.read_bytes() == (FIXTURES / "bert_tiny.ckpt").read_bytes()


@pytest.mark.parametrize("name", REAL_CHECKPOINTS)
def test_write_then_read_round_trips(tmp_path, name):
    tensors = expected(name)
    write_mindspore_checkpoint(tmp_path / "out.ckpt", tensors)
    assert_same(read_mindspore_checkpoint(tmp_path / "out.ckpt"), tensors)


def test_writer_splits_large_tensors_and_writes_crc(tmp_path, monkeypatch):
    monkeypatch.setattr(mindspore_ckpt, "_SLICE_BYTES", 1000)
    tensors = {"big": np.arange(1000, dtype=np.float32).reshape(10, 100), "small": np.ones(3, np.int8)}
    path = tmp_path / "split.ckpt"
    write_mindspore_checkpoint(path, tensors, crc=True)
    raw = path.read_bytes()
    assert raw.count(b"\n\x03big") == 4 and raw[-17:-10] == b"crc_num"
    assert_same(read_mindspore_checkpoint(path), tensors)


def test_writer_handles_scalars_strings_empty_views_and_byte_order(tmp_path):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensors = {
        "scalar": np.array(3, np.int64),
        "text": np.array("héllo"),
        "empty": np.zeros((0, 3), np.float32),
        "transposed": base.T,  # not contiguous
        "big_endian": np.arange(4, dtype=">i4"),
        "flags": np.array([True, False]),
    }
    path = tmp_path / "mixed.ckpt"
    write_mindspore_checkpoint(path, tensors)
    back = read_mindspore_checkpoint(path)
    assert back["scalar"].shape == () and back["scalar"] == 3
    assert str(back["text"]) == "héllo"
    assert back["empty"].shape == (0, 3)
    np.testing.assert_array_equal(back["transposed"], base.T)
    assert back["big_endian"].dtype == np.dtype("<i4")
    np.testing.assert_array_equal(back["big_endian"], np.arange(4))
    np.testing.assert_array_equal(back["flags"], [True, False])


def test_writer_writes_bfloat16(tmp_path):
    import ml_dtypes

    values = np.array([1.5, -2.25, 3.0e-3], np.float32)
    write_mindspore_checkpoint(tmp_path / "bf16.ckpt", {"w": values.astype(ml_dtypes.bfloat16)})
    assert b"BFloat16" in (tmp_path / "bf16.ckpt").read_bytes()
    back = read_mindspore_checkpoint(tmp_path / "bf16.ckpt")["w"]
    np.testing.assert_array_equal(back, values.astype(ml_dtypes.bfloat16).astype(np.float32))


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"w": np.array([object()])}, "dtype object"),
        ({"w": np.ones(2, np.complex64)}, "MindSpore cannot load"),
        ({"": np.ones(2)}, "non-empty strings"),
    ],
)
def test_writer_rejects_what_mindspore_cannot_load_and_leaves_old_file(tmp_path, tensors, message):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(BertforgeError, match=message):
        write_mindspore_checkpoint(path, {"ok": np.ones(2), **tensors})
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


def test_writer_reports_unwritable_path(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(BertforgeError, match=r"cannot write \S*taken: Is a directory \(EISDIR\)"):
        write_mindspore_checkpoint(tmp_path / "taken", {"w": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# --- files that are not (intact) checkpoints ------------------------------------------------------------


def read_error(path: Path) -> str:
    with pytest.raises(BertforgeError) as info:
        read_mindspore_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_empty_missing_and_directory(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert "empty file" in read_error(tmp_path / "empty.ckpt")
    assert "cannot open" in read_error(tmp_path / "missing.ckpt")
    assert "cannot open" in read_error(tmp_path)


def test_text_file(tmp_path):
    (tmp_path / "notes.ckpt").write_text("hello")
    assert "byte 0" in read_error(tmp_path / "notes.ckpt")


@pytest.mark.parametrize("seed", range(40))
def test_random_bytes_raise_cleanly(tmp_path, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
    if seed % 2:  # start like a record so the parser goes deeper than the first byte
        data = b"\x0a" + data
    (tmp_path / "random.ckpt").write_bytes(data)
    assert "byte " in read_error(tmp_path / "random.ckpt")


def record_boundaries(raw: bytes) -> set[int]:
    offsets, pos = {0}, 0
    while pos < len(raw) and raw[pos] == 0x0A:
        length, shift, pos = 0, 0, pos + 1
        while True:
            byte = raw[pos]
            length |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                break
        pos += length
        offsets.add(pos)
    return offsets


def test_truncated_files(tmp_path):
    raw = (FIXTURES / "bert_tiny.ckpt").read_bytes()
    boundaries = record_boundaries(raw)
    rng = np.random.default_rng(0)
    near_boundaries = {b + d for b in sorted(boundaries)[:-1] for d in (1, 2, 5)}
    cuts = {int(c) for c in rng.integers(1, len(raw), 150)} | near_boundaries
    path = tmp_path / "cut.ckpt"
    for cut in sorted(cuts - boundaries):
        path.write_bytes(raw[:cut])
        message = read_error(path)
        assert "truncated" in message or "corrupt" in message, message
    # Protobuf has no end marker: a cut exactly between records reads as a shorter checkpoint.
    cut = sorted(boundaries)[3]
    path.write_bytes(raw[:cut])
    assert len(read_mindspore_checkpoint(path)) == 3


def test_truncated_split_tensor(tmp_path):
    raw = (FIXTURES / "dtypes_split_crc.ckpt").read_bytes()
    cut = sorted(record_boundaries(raw[:-17]))[4]  # after 4 of the 8 records of split.float32
    (tmp_path / "cut.ckpt").write_bytes(raw[:cut])
    assert "needs 8192" in read_error(tmp_path / "cut.ckpt")


def test_crc_mismatch(tmp_path):
    raw = bytearray((FIXTURES / "dtypes_split_crc.ckpt").read_bytes())
    raw[300] ^= 0x01  # inside split.float32's data: only the CRC can tell
    (tmp_path / "flipped.ckpt").write_bytes(bytes(raw))
    assert "CRC32 check failed" in read_error(tmp_path / "flipped.ckpt")


def test_corrupt_headers(tmp_path):
    good = record("w", float32_tensor(np.arange(6), dims(2, 3)))
    cases = {
        "unknown_type.ckpt": (good.replace(b"Float32", b"Float99"), "'Float99'"),
        "wrong_dims.ckpt": (good.replace(dims(2, 3), dims(2, 4)), "needs 32"),
        "duplicate.ckpt": (good + record("v", float32_tensor(np.ones(1), b"")) + good, "appears twice"),
        "long_varint.ckpt": (b"\x0a" + b"\xff" * 11, "longer than 10 bytes"),
        "huge_length.ckpt": (b"\x0a" + varint(1 << 60) + b"\x00" * 20, "claims"),
        "negative_dim.ckpt": (record("w", dims((1 << 64) - 1) + field(2, b"Int8") + field(3, b"")), "negative"),
        "no_tag.ckpt": (field(1, field(2, float32_tensor(np.ones(1), b""))), "lacks its name"),
        "map_tensor.ckpt": (field(1, field(1, b"m") + field(3, b"")), "MapParameter"),
        "group.ckpt": (good + b"\x0a\x02\x0b\x00", "wire type 3"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert message in read_error(tmp_path / name), name


def test_other_formats_get_a_helpful_message(tmp_path):
    assert "safetensors" in read_error(FIXTURES / "saved_as_safetensors.ckpt")  # MindSpore's format='safetensors'
    assert "enc_key" in read_error(FIXTURES / "encrypted.ckpt")  # MindSpore's save_checkpoint(enc_key=...)
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    assert "torch.load" in read_error(tmp_path / "pytorch_model.bin")
    (tmp_path / "legacy.bin").write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    assert "pickle" in read_error(tmp_path / "legacy.bin")


def test_real_torch_and_safetensors_files(tmp_path):
    import safetensors.torch as safetensors_torch
    import torch

    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    assert "zip archive" in read_error(tmp_path / "model.pt")
    safetensors_torch.save_file({"w": torch.ones(2)}, tmp_path / "model.safetensors")
    assert "safetensors" in read_error(tmp_path / "model.safetensors")
