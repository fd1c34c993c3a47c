"""Read and write MindSpore ``.ckpt`` checkpoints without MindSpore or protobuf installed.

A ``.ckpt`` file is one serialized protobuf message (MindSpore's ``checkpoint.proto``, proto2)::

    Checkpoint  { repeated Value value = 1 }
    Value       { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3 } }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3 }

so the file is a run of ``0x0a <length> <Value>`` records, decoded here by a small varint /
length-delimited parser that reads each payload straight into a numpy buffer (a BERT-large file is
1.3 GB). What real files contain, checked against MindSpore's own writer by
``scripts/make_mindspore_fixtures.py``:

- a payload over 512 MiB is written as several consecutive records with the same tag, each carrying
  the full dims; the payloads concatenate in order;
- ``save_checkpoint(..., crc_check=True)`` appends a 17-byte trailer that is not protobuf:
  ``b"crc_num"`` and the CRC32 of every byte before it, 10 bytes big-endian;
- scalars have no dims; ``append_dict`` strings are tensor_type ``"str"``, dims ``[0]``, UTF-32 payload;
- payloads are in host byte order, which is little-endian on every platform MindSpore ships for;
- MindSpore's writer silently drops zero-size tensors (ours keeps them; MindSpore loads them fine).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path
from bertforge.formats.protowire import encode_varint as _varint
from bertforge.formats.protowire import length_delimited as _field_bytes

# tensor_type string (str() of a mindspore dtype) -> numpy dtype of the payload.
_NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "Bool": "?",
        "Int8": "i1",
        "UInt8": "u1",
        "Int16": "<i2",
        "UInt16": "<u2",
        "Int32": "<i4",
        "UInt32": "<u4",
        "Int64": "<i8",
        "UInt64": "<u8",
        "Float16": "<f2",
        "Float32": "<f4",
        "Float64": "<f8",
        "Complex64": "<c8",  # MindSpore writes these but its own loader rejects them
        "Complex128": "<c16",
    }.items()
}
_BFLOAT16 = "BFloat16"  # no numpy dtype: widened to float32 on read (exact: bf16 is fp32's top half)
_STR = "str"
# (numpy kind, itemsize) -> tensor_type for writing; complex is left out because MindSpore cannot load it.
_TYPE_NAMES: dict[tuple[str, int], str] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in _NUMPY_DTYPES.items() if dtype.kind != "c"
}

# MindSpore splits payloads above SLICE_SIZE (512 * 1024 KB) into records of this many bytes.
_SLICE_BYTES = 512 * 1024 * 1024
_CRC_MAGIC = b"crc_num"
_CRC_TRAILER_BYTES = len(_CRC_MAGIC) + 10
_ENTRY_KEY = 0x0A  # field 1 (Checkpoint.value), wire type 2 (length-delimited)
# First 4 bytes of a file saved with enc_key: MindSpore's cipher magic numbers, little-endian.
_CIPHER_MAGICS = {
    (0x7F3A5ED8).to_bytes(4, "little"): "AES-GCM",
    (0x7F3A5ED9).to_bytes(4, "little"): "AES-CBC",
    (0x7F3A5EDA).to_bytes(4, "little"): "SM4-CBC",
}


class _Decoder:
    """Sequential protobuf decoding of an open file: tracks the byte offset for errors and, when the
    file has a CRC trailer, a running CRC32 of everything read."""

    def __init__(self, f: BinaryIO, path: Path, end: int, with_crc: bool) -> None:
        self.f, self.path, self.end = f, path, end
        self.pos = 0
        self.crc: int | None = 0 if with_crc else None

    def error(self, offset: int, message: str) -> BertforgeError:
        return BertforgeError(f"{self.path}: byte {offset}: {message}")

    def _take(self, data: bytes | memoryview) -> None:
        self.pos += len(data)
        if self.crc is not None:
            self.crc = zlib.crc32(data, self.crc)

    def read(self, n: int, stop: int, what: str) -> bytes:
        """Read `n` bytes of a small field that must end by `stop`."""
        self._check_room(n, stop, what)
        data = self.f.read(n)
        if len(data) != n:
            raise self.error(self.pos + len(data), f"file ends inside {what} (truncated)")
        self._take(data)
        return data

    def read_payload(self, n: int, stop: int, what: str) -> np.ndarray:
        """Read `n` bytes into a fresh (aligned, writable) uint8 array, without per-byte Python work."""
        self._check_room(n, stop, what)
        buf = np.empty(n, dtype=np.uint8)
        view = memoryview(buf)
        filled = 0
        while filled < n:
            got = self.f.readinto(view[filled:])
            if not got:
                raise self.error(self.pos + filled, f"file ends inside {what} (truncated)")
            filled += got
        self._take(view)
        return buf

    def varint(self, stop: int, what: str) -> int:
        start, value = self.pos, 0
        for shift in range(0, 70, 7):
            byte = self.read(1, stop, what)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise self.error(start, f"{what} is a varint longer than 10 bytes (corrupt file)")

    def length(self, stop: int, what: str) -> int:
        """Read the length prefix of a length-delimited field and check it fits before `stop`."""
        start = self.pos
        n = self.varint(stop, f"the length of {what}")
        if n > stop - self.pos:
            raise self.error(
                start,
                f"{what} claims {n} bytes but only {stop - self.pos} remain in "
                f"{'the file' if stop == self.end else 'its enclosing record'} (file truncated or corrupt)",
            )
        return n

    def skip(self, wire_type: int, stop: int, what: str) -> None:
        """Skip an unknown field; protobuf allows them and a newer MindSpore may add some."""
        start = self.pos
        if wire_type == 0:
            self.varint(stop, what)
        elif wire_type == 1:
            self.read(8, stop, what)
        elif wire_type == 5:
            self.read(4, stop, what)
        elif wire_type == 2:
            n = self.length(stop, what)
            while n:  # in pieces, so a large unknown field costs no large allocation
                n -= len(self.read(min(n, 1 << 20), stop, what))
        else:
            raise self.error(
                start, f"{what} has protobuf wire type {wire_type}, which MindSpore never writes (corrupt file)"
            )

    def _check_room(self, n: int, stop: int, what: str) -> None:
        if n > stop - self.pos:
            left = stop - self.pos
            raise self.error(self.pos, f"{what} needs {n} bytes but only {left} remain (file truncated or corrupt)")


def _not_a_checkpoint_hint(head: bytes, size: int) -> str | None:
    """Name the format of a file that is plainly something else, so the user knows which loader to use."""
    if head[:4] in _CIPHER_MAGICS:
        return (
            f"it was saved with enc_key ({_CIPHER_MAGICS[head[:4]]}-encrypted); load it with "
            "mindspore.load_checkpoint(path, dec_key=...) and save it again without enc_key"
        )
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive: PyTorch's torch.save format (pytorch_model.bin, .pt); load it with torch.load"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return (
            "it is a safetensors file (MindSpore writes these with save_checkpoint(..., format='safetensors')); "
            "read it with safetensors.numpy.load_file"
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "it is a Python pickle (a legacy torch.save file?); load it with torch.load"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "it is an HDF5 file (Keras / TensorFlow .h5 weights)"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed; decompress it first"
    return None


def read_mindspore_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load every tensor of a MindSpore ``.ckpt`` file as ``{tag: array}``, in file order.

    Dtypes and shapes are MindSpore's (scalars are 0-d arrays), except BFloat16, which comes back as
    float32 (exactly: numpy has no bfloat16), and ``str`` entries, which come back as 0-d unicode arrays.
    Raises BertforgeError, naming the file and byte offset, for a file that is not a readable checkpoint.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise BertforgeError(f"{path}: cannot open MindSpore checkpoint: {exc.strerror}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise BertforgeError(f"{path}: empty file (0 bytes), expected a MindSpore .ckpt checkpoint")
        head = f.read(16)
        hint = _not_a_checkpoint_hint(head, size)
        if hint:
            raise BertforgeError(f"{path}: not a MindSpore .ckpt checkpoint: {hint}")
        if head[0] != _ENTRY_KEY:
            raise BertforgeError(
                f"{path}: byte 0: not a MindSpore .ckpt checkpoint: expected byte 0x0a (the start of a protobuf "
                f"Checkpoint.value record), found {head[0]:#04x}"
            )
        end, expected_crc = size, None
        if size >= _CRC_TRAILER_BYTES:
            f.seek(size - _CRC_TRAILER_BYTES)
            trailer = f.read(_CRC_TRAILER_BYTES)
            if trailer.startswith(_CRC_MAGIC):
                end, expected_crc = size - _CRC_TRAILER_BYTES, int.from_bytes(trailer[len(_CRC_MAGIC) :], "big")
        f.seek(0)
        decoder = _Decoder(f, path, end, with_crc=expected_crc is not None)
        tensors = _read_entries(decoder)
        if expected_crc is not None and decoder.crc != expected_crc:
            raise decoder.error(
                end,
                f"CRC32 check failed (trailer says {expected_crc:#010x}, content gives {decoder.crc:#010x}): "
                "the file is corrupt",
            )
    if not tensors:
        raise BertforgeError(f"{path}: holds no tensors, expected a MindSpore .ckpt checkpoint")
    return tensors


def _read_entries(d: _Decoder) -> dict[str, np.ndarray]:
    """Decode all Checkpoint.value records, joining consecutive records of one tag (a split tensor)."""
    tensors: dict[str, np.ndarray] = {}
    run: list[tuple[int, str, list[int], str, np.ndarray]] = []  # records of the tensor being assembled

    def finish() -> None:
        if run:
            offset, tag = run[0][0], run[0][1]
            if tag in tensors:
                raise d.error(offset, f"tensor {tag!r} appears twice, apart (MindSpore writes each tag once)")
            tensors[tag] = _assemble(d, run)
            run.clear()

    while d.pos < d.end:
        start = d.pos
        key = d.varint(d.end, "a record key")
        if key != _ENTRY_KEY:
            raise d.error(start, f"expected a Checkpoint.value record (key 0x0a), found key {key:#x} (corrupt file)")
        n = d.length(d.end, "a Checkpoint.value record")
        tag, dims, tensor_type, payload = _read_value(d, d.pos + n, start)
        if run and run[0][1] != tag:
            finish()
        run.append((start, tag, dims, tensor_type, payload))
    finish()
    return tensors


def _read_value(d: _Decoder, stop: int, start: int) -> tuple[str, list[int], str, np.ndarray]:
    """Decode one Value message ending at `stop`: (tag, dims, tensor_type, payload bytes)."""
    tag: str | None = None
    tensor: tuple[list[int], str, np.ndarray] | None = None
    while d.pos < stop:
        field_at = d.pos
        key = d.varint(stop, "a Value field key")
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 2:
            raw = d.read(d.length(stop, "a tensor name"), stop, "a tensor name")
            try:
                tag = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise d.error(field_at, f"tensor name {raw[:40]!r} is not UTF-8 (corrupt file)") from None
        elif field == 2 and wire_type == 2:
            n = d.length(stop, f"tensor {tag!r}")
            tensor = _read_tensor(d, d.pos + n, tag)
        elif field == 3 and wire_type == 2:
            raise d.error(field_at, f"{tag!r} is a MapParameter (maptensor), which bertforge does not read")
        else:
            d.skip(wire_type, stop, f"field {field} of tensor {tag!r}")
    if tag is None or tensor is None:
        raise d.error(start, f"record {tag!r} lacks its {'name' if tag is None else 'tensor'} (corrupt file)")
    return (tag, *tensor)


def _read_tensor(d: _Decoder, stop: int, tag: str | None) -> tuple[list[int], str, np.ndarray]:
    """Decode one TensorProto ending at `stop`: (dims, tensor_type, payload bytes)."""
    dims: list[int] = []
    tensor_type: str | None = None
    payload: np.ndarray | None = None
    start = d.pos
    while d.pos < stop:
        key = d.varint(stop, f"a field key of tensor {tag!r}")
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 0:  # what MindSpore writes: proto2 repeated fields are unpacked
            dims.append(_dim(d, stop, tag))
        elif field == 1 and wire_type == 2:  # packed dims, equally valid protobuf
            n = d.length(stop, f"the dims of tensor {tag!r}")
            packed_stop = d.pos + n
            while d.pos < packed_stop:
                dims.append(_dim(d, packed_stop, tag))
        elif field == 2 and wire_type == 2:
            raw = d.read(d.length(stop, f"the type of tensor {tag!r}"), stop, f"the type of tensor {tag!r}")
            tensor_type = raw.decode("ascii", errors="replace")
        elif field == 3 and wire_type == 2:
            what = f"the data of tensor {tag!r}"
            payload = d.read_payload(d.length(stop, what), stop, what)
        else:
            d.skip(wire_type, stop, f"field {field} of tensor {tag!r}")
    if tensor_type is None or payload is None:
        missing = "tensor_type" if tensor_type is None else "tensor_content"
        raise d.error(start, f"tensor {tag!r} lacks its {missing} (corrupt file)")
    return dims, tensor_type, payload


def _dim(d: _Decoder, stop: int, tag: str | None) -> int:
    start = d.pos
    dim = d.varint(stop, f"a dim of tensor {tag!r}")
    if dim >= 1 << 63:  # int64 varints encode negatives as huge unsigned values
        raise d.error(start, f"tensor {tag!r} has a negative dim (corrupt file)")
    return dim


def _assemble(d: _Decoder, run: list[tuple[int, str, list[int], str, np.ndarray]]) -> np.ndarray:
    """Join a tensor's records and view the bytes as its dtype and shape."""
    offset, tag, dims, tensor_type, _ = run[0]
    for at, _, other_dims, other_type, _ in run[1:]:
        if other_dims != dims or other_type != tensor_type:
            raise d.error(
                at,
                f"tensor {tag!r} is split over several records that disagree on its shape or type "
                f"({tensor_type}{dims} then {other_type}{other_dims}); corrupt file",
            )
    data = run[0][4] if len(run) == 1 else np.concatenate([record[4] for record in run])
    if tensor_type == _STR:
        if data.size % 4:
            raise d.error(offset, f"string {tag!r} has {data.size} bytes, not a whole number of UTF-32 characters")
        return np.array(data.tobytes().decode("utf-32-le"))
    if tensor_type == _BFLOAT16:
        itemsize = 2
    elif tensor_type in _NUMPY_DTYPES:
        itemsize = _NUMPY_DTYPES[tensor_type].itemsize
    elif tensor_type == "Int4":
        raise d.error(offset, f"tensor {tag!r} is Int4 (two 4-bit values per byte), which bertforge does not read")
    else:
        known = ", ".join([*_NUMPY_DTYPES, _BFLOAT16, _STR])
        raise d.error(offset, f"tensor {tag!r} has tensor_type {tensor_type!r}, expected one of {known}")
    if dims == [0] and data.size == itemsize:
        dims = []  # a scalar as older MindSpore wrote it; its loader maps dims [0] to a scalar too
    count = int(np.prod(dims, dtype=np.uint64)) if dims else 1
    if count * itemsize != data.size:
        raise d.error(
            offset,
            f"tensor {tag!r} has {data.size} bytes of data, but {tensor_type} of shape {tuple(dims)} needs "
            f"{count * itemsize} (file truncated or corrupt)",
        )
    if tensor_type == _BFLOAT16:
        return (data.view("<u2").astype("<u4") << 16).view("<f4").reshape(dims)
    return data.view(_NUMPY_DTYPES[tensor_type]).reshape(dims)


def _encode_for_checkpoint(path: Path, name: object, value: object) -> tuple[bytes, list[int], bytes, memoryview]:
    """Check one tensor and return (tag, dims, tensor_type, payload bytes) as MindSpore would write them."""
    if not isinstance(name, str) or not name:
        raise BertforgeError(f"{path}: tensor names must be non-empty strings, got {name!r}")
    array = np.asarray(value)
    if array.dtype.kind in "U" and array.ndim == 0:
        text = str(array)
        return name.encode(), [0], _STR.encode(), memoryview(text.encode("utf-32-le"))
    if array.dtype.name == "bfloat16" and array.dtype.itemsize == 2:  # ml_dtypes / MindSpore's numpy bfloat16
        tensor_type = _BFLOAT16
    else:
        tensor_type = _TYPE_NAMES.get((array.dtype.kind, array.dtype.itemsize))
        if tensor_type is None:
            raise BertforgeError(
                f"{path}: tensor {name!r} has dtype {array.dtype}, which MindSpore cannot load; expected bool, "
                "(u)int8/16/32/64, float16/32/64, bfloat16 or a 0-d str array"
            )
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # not np.ascontiguousarray: it turns a scalar into shape (1,)
    return name.encode(), list(array.shape), tensor_type.encode(), memoryview(array.reshape(-1).view(np.uint8))


def write_mindspore_checkpoint(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], *, crc: bool = False
) -> None:
    """Write ``{tag: array}`` as a MindSpore ``.ckpt`` that ``mindspore.load_checkpoint`` reads.

    The layout is MindSpore's own (same record order, payloads over 512 MiB split the same way), and with
    ``crc=True`` the file ends in the CRC trailer that ``load_checkpoint(..., crc_check=True)`` verifies.
    The file appears atomically (temp file + rename), so a crash never leaves half a checkpoint behind.
    """
    path = Path(path)
    entries = [_encode_for_checkpoint(path, name, value) for name, value in tensors.items()]
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            running_crc = 0
            for tag, dims, tensor_type, payload in entries:
                # each slice is a whole record with the full dims, as MindSpore writes large tensors
                for begin in range(0, len(payload), _SLICE_BYTES) if len(payload) else [0]:
                    chunk = payload[begin : begin + _SLICE_BYTES]
                    tensor_head = b"".join(b"\x08" + _varint(dim) for dim in dims)
                    tensor_head += _field_bytes(2, tensor_type) + b"\x1a" + _varint(len(chunk))
                    value_head = _field_bytes(1, tag) + b"\x12" + _varint(len(tensor_head) + len(chunk)) + tensor_head
                    record_head = bytes([_ENTRY_KEY]) + _varint(len(value_head) + len(chunk)) + value_head
                    f.write(record_head)
                    f.write(chunk)
                    if crc:
                        running_crc = zlib.crc32(chunk, zlib.crc32(record_head, running_crc))
            if crc:
                f.write(_CRC_MAGIC + running_crc.to_bytes(10, "big"))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise BertforgeError(f"{path}: cannot write MindSpore checkpoint: {exc.strerror or exc}") from exc
