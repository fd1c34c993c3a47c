"""Read and write TensorFlow checkpoint bundles (format V2, what ``tf.train.Saver`` and ``tf.train.Checkpoint``
write) without TensorFlow: Google's BERT and Huawei's NEZHA releases are such bundles.

A bundle with prefix ``P`` (``bert_model.ckpt``) is ``P.index`` and the shards ``P.data-0000K-of-0000N``:

- ``P.index`` is a LevelDB table (``formats.sstable``): key ``""`` holds a ``BundleHeaderProto``
  (num_shards = 1, endianness = 2, version = 3), every other key a tensor name and its
  ``BundleEntryProto`` (dtype = 1, shape = 2, shard_id = 3, offset = 4, size = 5, crc32c = 6 as fixed32,
  slices = 7); a partitioned variable's pieces are keyed by binary names that start with a 0 byte;
- a shard is the tensors' raw little-endian bytes back to back; each entry's ``crc32c`` is the masked
  CRC32C of its bytes. A string tensor is its varint64 lengths, a 4-byte checksum of the lengths, then
  the bytes.

Shards are memory-mapped and a tensor is read (and its CRC checked) only when asked for, so converting
skips optimizer slots without touching them and a 1.3 GB checkpoint costs no 1.3 GB of memory.
"""

from __future__ import annotations

import codecs
import glob
import mmap
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path
from bertforge.formats.crc32c import crc32c, crc32c_of, mask
from bertforge.formats.protowire import (
    WireError,
    decode_length,
    decode_varint,
    encode_varint,
    length_delimited,
    skip_field,
)
from bertforge.formats.sstable import TableError, build_table, read_table

# TensorFlow's DataType enum (types.proto) -> (name, numpy dtype); bfloat16 has no numpy dtype of its own.
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"),
    2: ("float64", "<f8"),
    3: ("int32", "<i4"),
    4: ("uint8", "u1"),
    5: ("int16", "<i2"),
    6: ("int8", "i1"),
    7: ("string", None),
    8: ("complex64", "<c8"),
    9: ("int64", "<i8"),
    10: ("bool", "?"),
    14: ("bfloat16", None),
    17: ("uint16", "<u2"),
    18: ("complex128", "<c16"),
    19: ("float16", "<f2"),
    22: ("uint32", "<u4"),
    23: ("uint64", "<u8"),
}
_OTHER_DTYPES = {11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16", 20: "resource", 21: "variant"}
_DT_STRING, _DT_BFLOAT16 = 7, 14
# numpy (kind, itemsize) -> DataType, for writing.
_ENUMS = {(np.dtype(code).kind, np.dtype(code).itemsize): num for num, (_, code) in _DTYPES.items() if code}
_BUNDLE_VERSION = 1  # kTensorBundleVersion: the format this reader understands
_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: what a `BundleEntryProto` says."""

    dtype: int  # TensorFlow DataType number
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int  # bytes
    crc32c: int  # masked, as stored
    slices: int  # > 0: a partitioned variable, stored as that many pieces

    @property
    def dtype_name(self) -> str:
        return _DTYPES.get(self.dtype, (_OTHER_DTYPES.get(self.dtype, f"DataType {self.dtype}"), None))[0]


def shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


def index_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


# ----------------------------------------------------------------------------------------- finding one
def find_tf_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The bundle prefix that `path` names, or None when it names no TensorFlow checkpoint.

    `path` may be the prefix (``bert_model.ckpt``), its ``.index`` or a ``.data-…`` shard, a folder holding
    one bundle, or a ``checkpoint`` state file (or a folder with one), which names the latest.
    """
    path = Path(path)
    if index_path(path).is_file():
        return path
    if path.is_file() and path.suffix == ".index":
        return path.with_suffix("")
    if _SHARD.search(path.name):
        return path.with_name(_SHARD.sub("", path.name))
    if path.is_file() and path.name == "checkpoint":
        return _latest(path)
    if path.is_dir():
        if (path / "checkpoint").is_file():
            return _latest(path / "checkpoint")
        found = sorted(path.glob("*.index"))
        if len(found) > 1:
            names = ", ".join(f.name[: -len(".index")] for f in found)
            raise BertforgeError(f"{path}: several TensorFlow checkpoints ({names}); name one by its prefix")
        if found:
            return found[0].with_suffix("")
    data = sorted(path.glob("*.data-*-of-*") if path.is_dir() else path.parent.glob(glob.escape(path.name) + ".data-*"))
    if data:  # a bundle whose index was not copied: say so, rather than "does not exist"
        prefix = data[0].with_name(_SHARD.sub("", data[0].name))
        raise BertforgeError(f"{index_path(prefix)}: missing; a TensorFlow checkpoint needs it beside its .data files")
    return None


def _latest(state: Path) -> Path:
    """The checkpoint a ``checkpoint`` file names (`model_checkpoint_path: "…"`), relative to its folder. An
    absolute path from the machine it was trained on is looked up beside the file too."""
    text = state.read_text(encoding="utf-8", errors="replace")
    m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.MULTILINE)
    if not m:
        raise BertforgeError(f"{state}: no model_checkpoint_path line; not a TensorFlow checkpoint state file")
    # protobuf text format: UTF-8 as is (TF 2) or octal escapes (older writers), and \" \\ escapes
    named = Path(codecs.escape_decode(m.group(1).encode("utf-8"))[0].decode("utf-8", "replace"))
    prefix = named if named.is_absolute() else state.parent / named
    if not index_path(prefix).is_file() and index_path(state.parent / named.name).is_file():
        prefix = state.parent / named.name
    if not index_path(prefix).is_file():
        raise BertforgeError(f"{state} names checkpoint {m.group(1)!r}, but {index_path(prefix)} does not exist")
    return prefix


# ------------------------------------------------------------------------------------------------ reading
class TfCheckpoint(Mapping[str, np.ndarray]):
    """An open bundle, as a read-only mapping of tensor names to arrays.

    Opening parses the index and checks every entry against its shard's size; `ckpt[name]` reads one tensor
    from the memory-mapped shard, checks its CRC32C and returns a fresh array. bfloat16 comes back as
    float32 (exactly: bfloat16 is float32's upper half); strings as an object array of bytes.
    """

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        self.prefix = Path(prefix)
        self.index = index_path(self.prefix)
        try:
            data = self.index.read_bytes()
        except OSError as exc:
            raise BertforgeError(f"{self.index}: cannot read TensorFlow checkpoint index: {exc.strerror}") from None
        self.entries: dict[str, TensorEntry] = {}
        self.num_shards = 1
        header_seen = False
        try:
            for key, value in read_table(data):
                if key == b"":
                    self.num_shards = self._header(value)
                    header_seen = True
                elif key[0] != 0:  # keys starting with 0 are the pieces of partitioned variables
                    self.entries[key.decode("utf-8", "backslashreplace")] = self._entry(key, value)
        except TableError as exc:
            raise BertforgeError(f"{self.index}: byte {exc.offset}: {exc.detail}") from None
        if not header_seen:
            raise BertforgeError(f"{self.index}: no bundle header (key ''); not a TensorFlow checkpoint index")
        self._maps: list[mmap.mmap | None] = []
        for shard in range(self.num_shards):
            self._maps.append(self._map(shard_path(self.prefix, shard, self.num_shards)))
        for name, entry in self.entries.items():
            self._check_entry(name, entry)

    def _header(self, value: memoryview) -> int:
        fields = _fields(value, f"{self.index}: the bundle header", {1: _INT, 2: _INT, 3: _BYTES})
        endianness, version = fields.get(2, 0), fields.get(3, b"")
        if endianness != 0:
            raise BertforgeError(f"{self.index}: a big-endian bundle, which bertforge does not read")
        min_consumer = _fields(version, f"{self.index}: the bundle version", {2: _INT}).get(2, 0)
        if min_consumer > _BUNDLE_VERSION:
            raise BertforgeError(
                f"{self.index}: bundle format needs a reader of version {min_consumer} (this one reads "
                f"{_BUNDLE_VERSION}); written by a newer TensorFlow"
            )
        num_shards = fields.get(1, 1)
        if not 1 <= num_shards <= 99999:
            raise BertforgeError(f"{self.index}: the bundle header says {num_shards} shards (corrupt index)")
        return num_shards

    def _entry(self, key: bytes, value: memoryview) -> TensorEntry:
        what = f"{self.index}: the entry of tensor {key[:80].decode('utf-8', 'backslashreplace')!r}"
        fields = _fields(value, what, {1: _INT, 2: _BYTES, 3: _INT, 4: _INT, 5: _INT, 6: _INT, 7: _LIST})
        shape: list[int] = []
        shape_fields = _fields(fields.get(2, b""), what, {2: _LIST, 3: _INT})
        if shape_fields.get(3):
            raise BertforgeError(f"{what} has an unknown rank (corrupt index)")
        for dim in shape_fields.get(2, []):
            size = _fields(dim, what, {1: _INT}).get(1, 0)
            if size >= 1 << 63:
                raise BertforgeError(f"{what} has a negative dimension (corrupt index)")
            shape.append(size)
        return TensorEntry(
            dtype=fields.get(1, 0),
            shape=tuple(shape),
            shard=fields.get(3, 0),
            offset=fields.get(4, 0),
            size=fields.get(5, 0),
            crc32c=fields.get(6, 0),
            slices=len(fields.get(7, [])),
        )

    def _map(self, path: Path) -> mmap.mmap | None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except FileNotFoundError:
            raise BertforgeError(
                f"{path}: missing; {self.index} says the checkpoint has {self.num_shards} data shard(s), "
                "copy them all beside the index"
            ) from None
        except OSError as exc:
            raise BertforgeError(f"{path}: cannot read TensorFlow checkpoint data: {exc.strerror}") from None

    def _check_entry(self, name: str, entry: TensorEntry) -> None:
        """Everything the index alone can refute, so a bad bundle fails when opened, not half-way through."""
        if entry.slices:
            return  # refused by name when read
        if entry.shard >= self.num_shards:
            raise BertforgeError(
                f"{self.index}: tensor {name!r} is in shard {entry.shard}, but there are {self.num_shards} "
                "(corrupt index)"
            )
        shard = shard_path(self.prefix, entry.shard, self.num_shards)
        mapped = self._maps[entry.shard]
        available = len(mapped) if mapped is not None else 0
        if entry.offset + entry.size > available:
            raise BertforgeError(
                f"{shard}: {available} bytes, but tensor {name!r} lies at bytes {entry.offset}.."
                f"{entry.offset + entry.size} (the data file is truncated, or not this index's)"
            )
        numpy_dtype = _DTYPES.get(entry.dtype, (None, None))[1]
        itemsize = 2 if entry.dtype == _DT_BFLOAT16 else np.dtype(numpy_dtype).itemsize if numpy_dtype else None
        if itemsize is not None and entry.size != itemsize * int(np.prod(entry.shape, dtype=np.uint64)):
            raise BertforgeError(
                f"{self.index}: tensor {name!r} is {entry.dtype_name}{list(entry.shape)} but has {entry.size} bytes "
                "(corrupt index)"
            )

    def __getitem__(self, name: str) -> np.ndarray:
        array = self.view(name)
        return array if array.flags.writeable else array.copy()  # a read-only view is over the mapped shard

    def view(self, name: str) -> np.ndarray:
        """The tensor without a copy: a read-only array over the mapped shard, its CRC32C checked, valid while
        the checkpoint is open. bfloat16, string and empty tensors come as fresh arrays, as `ckpt[name]`."""
        entry = self.entries[name]
        self.check_readable(name)
        if entry.dtype == _DT_STRING:
            return self._strings(name, entry)
        buf = self._maps[entry.shard]
        if entry.size and mask(crc32c_of(buf, entry.offset, entry.offset + entry.size)) != entry.crc32c:
            raise self._corrupt(name, entry)
        count = int(np.prod(entry.shape, dtype=np.uint64))
        if entry.dtype == _DT_BFLOAT16:
            raw = np.frombuffer(buf, dtype="<u2", count=count, offset=entry.offset) if count else np.zeros(0, "<u2")
            return (raw.astype("<u4") << 16).view("<f4").reshape(entry.shape)
        dtype = np.dtype(_DTYPES[entry.dtype][1])
        if not count:
            return np.zeros(entry.shape, dtype)
        return np.frombuffer(buf, dtype=dtype, count=count, offset=entry.offset).reshape(entry.shape)

    def check_readable(self, name: str) -> None:
        """Raise what reading `name` would for a reason the index alone shows (a partitioned variable, a dtype
        bertforge does not read), so a caller can refuse before it writes anything."""
        entry = self.entries[name]
        if entry.slices:
            raise BertforgeError(
                f"{self.prefix}: tensor {name!r} is a partitioned variable (saved in {entry.slices} slices), which "
                "bertforge does not read; save it unpartitioned"
            )
        if entry.dtype not in _DTYPES:
            known = ", ".join(n for n, _ in _DTYPES.values())
            raise BertforgeError(
                f"{self.prefix}: tensor {name!r} has dtype {entry.dtype_name}, which bertforge does not read "
                f"(expected {known})"
            )

    def release(self, name: str) -> None:
        """Unmap the pages holding `name` from this process (the OS keeps them cached; a later read maps them
        again), so reading a whole checkpoint once does not grow resident memory by its size."""
        entry = self.entries[name]
        buf = self._maps[entry.shard] if not entry.slices and entry.shard < len(self._maps) else None
        if buf is None or not entry.size or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = entry.offset - entry.offset % mmap.PAGESIZE
        buf.madvise(mmap.MADV_DONTNEED, start, entry.offset + entry.size - start)

    def _strings(self, name: str, entry: TensorEntry) -> np.ndarray:
        """A string tensor: varint64 lengths, the masked CRC32C of the lengths, the bytes. The entry's CRC
        covers the lengths as uint32 (uint64 above 4 GiB), that checksum, and the bytes."""
        data = self._maps[entry.shard][entry.offset : entry.offset + entry.size] if entry.size else b""
        count = int(np.prod(entry.shape, dtype=np.uint64))
        lengths, pos = [], 0
        try:
            for _ in range(count):
                n, pos = decode_varint(data, pos, len(data))
                lengths.append(n)
        except WireError:
            raise self._corrupt(name, entry) from None
        if pos + 4 + sum(lengths) != len(data):
            raise self._corrupt(name, entry)
        sizes = b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths)
        if mask(crc32c(sizes + data[pos:])) != entry.crc32c:
            raise self._corrupt(name, entry)
        pos += 4
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = bytes(data[pos : pos + n])
            pos += n
        return out.reshape(entry.shape)

    def _corrupt(self, name: str, entry: TensorEntry) -> BertforgeError:
        return BertforgeError(
            f"{shard_path(self.prefix, entry.shard, self.num_shards)}: tensor {name!r} (bytes {entry.offset}.."
            f"{entry.offset + entry.size}) fails its CRC32C check: the file is corrupt"
        )

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the tensor
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


_INT, _BYTES, _LIST = "int", "bytes", "list"  # how `_fields` returns a field: varint/fixed32, bytes, repeated


def _fields(message: bytes | memoryview, what: str, kinds: dict[int, str]) -> dict[int, object]:
    """The fields of a small protobuf message that `kinds` names, each as its kind says (a field of another
    wire type is a corrupt index); other fields are skipped."""
    out: dict[int, object] = {}
    pos, end = 0, len(message)
    try:
        while pos < end:
            key_at = pos
            key, pos = decode_varint(message, pos, end)
            field, wire = key >> 3, key & 7
            kind = kinds.get(field)
            if kind is None:
                pos = skip_field(message, pos, end, key, key_at)
            elif kind == _INT and wire == 0:
                out[field], pos = decode_varint(message, pos, end)
            elif kind == _INT and wire == 5 and pos + 4 <= end:
                out[field], pos = int.from_bytes(message[pos : pos + 4], "little"), pos + 4
            elif kind in (_BYTES, _LIST) and wire == 2:
                start, pos = decode_length(message, pos, end)
                if kind == _LIST:
                    out.setdefault(field, []).append(message[start:pos])
                else:
                    out[field] = message[start:pos]
            else:
                raise WireError(key_at, f"field {field} has wire type {wire}, not a {kind}")
    except WireError as exc:
        raise BertforgeError(f"{what}: {exc.detail} (corrupt index)") from None
    return out


# ------------------------------------------------------------------------------------------------ writing
def write_tf_checkpoint(prefix: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``{name: array}`` as a one-shard bundle ``prefix.index`` + ``prefix.data-00000-of-00001`` that
    ``tf.train.load_checkpoint`` reads: the bytes TensorFlow's own BundleWriter produces (data in the order
    given, as `BundleWriter::Add` appends it, unaligned; the index sorted by name). bfloat16 arrays
    (ml_dtypes') are written as DT_BFLOAT16. Each file appears atomically, the data before the index."""
    prefix = Path(prefix)
    entries: list[tuple[bytes, bytes]] = [(b"", _header())]
    data = shard_path(prefix, 0, 1)
    try:
        with atomic_path(data) as tmp, open(tmp, "wb") as f:
            offset = 0
            for name in tensors:
                dtype, payload = _payload(prefix, name, tensors[name])
                f.write(payload)
                dims = b"".join(length_delimited(2, _varint_field(1, d)) for d in np.shape(tensors[name]))
                entry = _varint_field(1, dtype) + length_delimited(2, dims)
                entry += _varint_field(4, offset) + _varint_field(5, len(payload))
                entry += b"\x35" + mask(crc32c_of(payload, 0, len(payload))).to_bytes(4, "little")  # field 6, fixed32
                entries.append((name.encode(), entry))
                offset += len(payload)
            f.flush()
            os.fsync(f.fileno())
        with atomic_path(index_path(prefix)) as tmp:
            tmp.write_bytes(build_table(sorted(entries)))
    except OSError as exc:
        raise BertforgeError(f"{prefix}: cannot write TensorFlow checkpoint: {exc.strerror or exc}") from exc
    return prefix


def _header() -> bytes:
    """BundleHeaderProto as TensorFlow writes it: num_shards 1, little-endian (the default, omitted),
    version { producer: 1 }."""
    return _varint_field(1, 1) + length_delimited(3, _varint_field(1, _BUNDLE_VERSION))


def _payload(prefix: Path, name: object, value: object) -> tuple[int, memoryview]:
    if not isinstance(name, str) or not name or "\0" in name:
        raise BertforgeError(f"{prefix}: tensor names must be non-empty strings without NUL, got {name!r}")
    array = np.asarray(value)
    if array.dtype.name == "bfloat16" and array.dtype.itemsize == 2:
        dtype = _DT_BFLOAT16
    else:
        dtype = _ENUMS.get((array.dtype.kind, array.dtype.itemsize))
        if dtype is None:
            raise BertforgeError(f"{prefix}: tensor {name!r} has dtype {array.dtype}, which the writer does not write")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    return dtype, memoryview(array.reshape(-1).view(np.uint8))


def _varint_field(field: int, value: int) -> bytes:
    """A proto3 varint field, omitted at its default 0 as protobuf does."""
    return encode_varint(field << 3) + encode_varint(value) if value else b""
