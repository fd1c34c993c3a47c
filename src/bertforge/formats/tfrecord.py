"""Read Google-format BERT pretraining TFRecords (``create_pretraining_data.py`` output) without TensorFlow.

A TFRecord file is a run of records, each framed as::

    uint64 length (little-endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

optionally GZIP- or ZLIB-compressed as a whole (TF's ``compression_type``; recognised here by magic
bytes, not by file name). Each record of a pretraining file is a serialized ``tf.train.Example``::

    Example  { Features features = 1 }
    Features { map<string, Feature> feature = 1 }    # entries: { string key = 1; Feature value = 2 }
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }
    *List    { repeated <bytes | float | int64> value = 1 }  # numeric lists usually packed

Speed matters (a shard holds ~100k records of ~1.3 KB): the per-record Python work is only walking the
few fields of each Example; CRCs and the packed varint lists are decoded for thousands of records at
once with numpy (see ``crc32c_spans`` and ``protowire.decode_varints``). Checked against files written
and parsed by TensorFlow itself (``scripts/make_tfrecord_fixtures.py``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path
from bertforge.formats.crc32c import crc32c, crc32c_spans, mask
from bertforge.formats.protowire import (
    WireError,
    decode_varint,
    decode_varints,
    encode_varint,
    length_delimited,
    skip_field,
)

PathLike = str | os.PathLike[str]

# The seven features Google's create_pretraining_data.py writes.
SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")  # max_seq_length values each
PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")  # max_predictions_per_seq
PRETRAINING_FEATURES = (*SEQUENCE_FEATURES, *PREDICTION_FEATURES, "next_sentence_labels")
_FLOAT_FEATURES = {"masked_lm_weights"}

_BYTES, _FLOAT, _INT64 = 1, 2, 3  # Feature.kind field numbers
_KIND_NAMES = {0: "an empty Feature", _BYTES: "bytes_list", _FLOAT: "float_list", _INT64: "int64_list"}

_HEADER = 12  # uint64 length + its masked CRC
_FOOTER = 4  # masked CRC of the data
_BATCH_BYTES = 4 << 20  # records are CRC-checked and decoded this many bytes at a time
_MAX_READ = 256 << 20  # so a corrupt length with a matching CRC cannot ask for exabytes at once


# ------------------------------------------------------------------------------------------- framing


@dataclass
class _Batch:
    """Consecutive CRC-checked records: record i of the batch is ``data[starts[i]:starts[i] + lengths[i]]``."""

    data: bytes
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64
    first_index: int  # index in the file of the batch's first record
    stream_offset: int  # byte offset of data[0] in the (decompressed) file
    note: str  # says which bytes offsets count in a compressed file

    def where(self, i: int, at: int | None = None) -> str:
        """'record N (byte M)' for record i of the batch, at byte `at` of data (default its start)."""
        offset = self.stream_offset + (int(self.starts[i]) - _HEADER if at is None else at)
        return f"record {self.first_index + i} (byte {offset}{self.note})"


def _open_reader(path: Path, f) -> tuple[Callable[[int], bytes], str]:
    """A read(n) function over the file's records, decompressing if the file is GZIP or ZLIB, and a note
    for error messages. A valid length CRC at byte 0 wins over magic bytes (a plain file could start 1f 8b)."""
    head = f.read(_HEADER)
    f.seek(0)
    if len(head) == _HEADER and mask(crc32c(head[:8])) == int.from_bytes(head[8:], "little"):
        return f.read, ""
    if head[:2] == b"\x1f\x8b":
        return _in_pieces(gzip.GzipFile(fileobj=f, mode="rb").read), " of the gzip-decompressed data"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        decompressor = zlib.decompressobj()

        def read_zlib(n: int) -> bytes:
            out = bytearray()
            while len(out) < n and not decompressor.eof:
                chunk = decompressor.unconsumed_tail or f.read(1 << 20)
                if not chunk:
                    raise EOFError("the zlib stream ends before its end marker")
                out += decompressor.decompress(chunk, n - len(out))
            return bytes(out)

        return _in_pieces(read_zlib), " of the zlib-decompressed data"
    return f.read, ""


def _in_pieces(read: Callable[[int], bytes], piece: int = 1 << 16) -> Callable[[int], bytes]:
    """Wrap a decompressing read(n) so that a decompression error first returns the data before it, and
    is raised on the next call: the records before the damage are read, and the error names the first
    record lost."""
    failure: Exception | None = None

    def read_n(n: int) -> bytes:
        nonlocal failure
        if failure is not None:
            raise failure
        parts, got = [], 0
        while got < n:
            try:
                part = read(min(piece, n - got))
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                if not parts:
                    raise
                failure = exc
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    return read_n


def _batches(path: PathLike) -> Iterator[_Batch]:
    """CRC-checked records of a TFRecord file, a few MiB at a time."""
    path, batch_bytes = Path(path), _BATCH_BYTES
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise BertforgeError(f"{path}: cannot open TFRecord file: {exc.strerror}") from exc
    with f:
        read, note = _open_reader(path, f)
        pending, offset, index = b"", 0, 0  # unconsumed bytes, their stream offset, next record's index
        need = batch_bytes
        while True:
            try:
                chunk = read(min(max(need, batch_bytes), _MAX_READ))
            except (OSError, EOFError, zlib.error) as exc:
                raise BertforgeError(
                    f"{path}: record {index} (byte {offset}{note}): cannot decompress the file from here on "
                    f"({exc}); it is corrupt or truncated"
                ) from exc
            if not chunk:
                break
            data = pending + chunk
            starts, lengths, pos = [], [], 0
            while len(data) - pos >= _HEADER:
                (length,) = struct.unpack_from("<Q", data, pos)
                if mask(crc32c(data[pos : pos + 8])) != int.from_bytes(data[pos + 8 : pos + 12], "little"):
                    hint = " (this is not a TFRecord file)" if index == 0 and offset + pos == 0 else ""
                    raise BertforgeError(
                        f"{path}: record {index + len(starts)} (byte {offset + pos}{note}): the CRC of the record "
                        f"length does not match{hint}; the file is corrupt"
                    )
                end = pos + _HEADER + length + _FOOTER
                if end > len(data):
                    need = end - len(data)
                    break
                starts.append(pos + _HEADER)
                lengths.append(length)
                pos = end
            else:
                need = batch_bytes
            if starts:
                batch = _Batch(data, np.array(starts, np.int64), np.array(lengths, np.int64), index, offset, note)
                _check_data_crcs(path, batch)
                yield batch
                index += len(starts)
            pending, offset = data[pos:], offset + pos
        if pending:
            if len(pending) < _HEADER:
                what = f"its 12-byte header ({len(pending)} bytes left)"
            else:
                length = int.from_bytes(pending[:8], "little")
                what = f"its data (the record needs {_HEADER + length + _FOOTER} bytes, {len(pending)} are left)"
            raise BertforgeError(
                f"{path}: record {index} (byte {offset}{note}): the file ends inside {what}; truncated file"
            )


def _check_data_crcs(path: Path, batch: _Batch) -> None:
    buf = np.frombuffer(batch.data, dtype=np.uint8)
    ends = batch.starts + batch.lengths
    stored = buf[ends[:, None] + np.arange(4)].view("<u4").ravel()
    bad = np.flatnonzero(mask(crc32c_spans(buf, batch.starts, batch.lengths).astype(np.uint64)) != stored)
    if bad.size:
        i = int(bad[0])
        raise BertforgeError(
            f"{path}: {batch.where(i)}: the CRC of the record's {batch.lengths[i]} data bytes does not "
            f"match; the file is corrupt"
        )


def iter_tfrecord(path: PathLike) -> Iterator[bytes]:
    """Yield the data of every record of a TFRecord file (plain, GZIP or ZLIB), checking both CRCs.

    An empty file has no records (as in TensorFlow). Raises BertforgeError naming the file, the record
    index and the byte offset for a corrupt or truncated file.
    """
    for batch in _batches(path):
        for start, length in zip(batch.starts.tolist(), batch.lengths.tolist()):
            yield batch.data[start : start + length]


# ---------------------------------------------------------------------------------------- tf.Example


def _field(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The field starting at `pos`: (key, start, stop). For wire type 2, buf[start:stop] is its data;
    for other wire types start is the position after the key and stop is -1. Inlines the common 1-byte
    key and 1- or 2-byte length: this runs ~35 times per pretraining record."""
    key = buf[pos]
    if key < 0x80:
        pos += 1
    else:
        key, pos = decode_varint(buf, pos, end)
    if key & 7 != 2:
        return key, pos, -1
    if pos + 1 < end and buf[pos] < 0x80:
        n, pos = buf[pos], pos + 1
    elif pos + 1 < end and buf[pos + 1] < 0x80:
        n, pos = (buf[pos] & 0x7F) | buf[pos + 1] << 7, pos + 2
    else:
        n, pos = decode_varint(buf, pos, end)
    if n > end - pos:
        raise WireError(pos, f"a field claims {n} bytes but only {end - pos} remain (truncated or corrupt)")
    return key, pos, pos + n


def _skip(buf: bytes, key: int, start: int, stop: int, end: int, key_at: int) -> int:
    """Position after a field that `_field` returned and the caller does not want."""
    return stop if stop >= 0 else skip_field(buf, start, end, key, key_at)


_NO_FEATURE: tuple[int, list[int]] = (0, [])


def _scan_example(buf: bytes, pos: int, end: int) -> dict[bytes, tuple[int, list[int]]]:
    """Walk one serialized Example in buf[pos:end]: {feature name: (kind, spans)} where spans is a flat
    [start, end, ...] list of byte ranges in buf. For int64/float lists the ranges, concatenated, are
    the packed values; for bytes lists each range is one value. Unknown fields are skipped; as protobuf
    parsing does, a repeated map key keeps its last value and repeated lists of one kind concatenate."""
    features: dict[bytes, tuple[int, list[int]]] = {}
    while pos < end:
        key, start, stop = _field(buf, pos, end)
        if key != 0x0A:  # not Example.features
            pos = _skip(buf, key, start, stop, end, pos)
            continue
        pos = start
        while pos < stop:  # Features: its map entries
            key, start, entry_end = _field(buf, pos, stop)
            if key != 0x0A:
                pos = _skip(buf, key, start, entry_end, stop, pos)
                continue
            pos, name, feature = start, b"", _NO_FEATURE
            while pos < entry_end:
                key, start, value_end = _field(buf, pos, entry_end)
                if key == 0x0A:
                    name = buf[start:value_end]
                elif key == 0x12:
                    feature = _scan_feature(buf, start, value_end)
                pos = _skip(buf, key, start, value_end, entry_end, pos)
            features[name] = feature
        pos = stop
    return features


def _scan_feature(buf: bytes, pos: int, end: int) -> tuple[int, list[int]]:
    kind, spans = 0, []
    while pos < end:
        key, start, list_end = _field(buf, pos, end)
        field = key >> 3
        if list_end < 0 or field not in (_BYTES, _FLOAT, _INT64):
            pos = _skip(buf, key, start, list_end, end, pos)
            continue
        if field != kind:  # oneof: a later member replaces an earlier one
            kind, spans = field, []
        pos = start
        while pos < list_end:
            key, start, stop = _field(buf, pos, list_end)
            if key == 0x0A:  # a bytes value, or a packed run of numbers
                if kind == _FLOAT and (stop - start) % 4:
                    raise WireError(start, f"a packed float list of {stop - start} bytes (not a multiple of 4)")
                spans += (start, stop)
            elif key == 0x08 and kind == _INT64:  # one unpacked int64
                stop = decode_varint(buf, start, list_end)[1]
                spans += (start, stop)
            elif key == 0x0D and kind == _FLOAT:  # one unpacked float
                stop = skip_field(buf, start, list_end, key, pos)
                spans += (start, stop)
            pos = _skip(buf, key, start, stop, list_end, pos)
    return kind, spans


def _gather(buf: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Concatenate the byte ranges `spans` (shape (n, 2): start, end) of buf into one uint8 array."""
    sizes = spans[:, 1] - spans[:, 0]
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint8)
    keep = sizes > 0
    spans, sizes = spans[keep], sizes[keep]
    index = np.arange(total, dtype=np.int64) + np.repeat(spans[:, 0] - (np.cumsum(sizes) - sizes), sizes)
    return buf[index]


def _int64s(buf: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int64 values in varint ranges (n, 2) of buf, and how many each range holds. Raises WireError
    for a range that ends inside a varint."""
    sizes = spans[:, 1] - spans[:, 0]
    cut = np.flatnonzero((sizes > 0) & (buf[np.maximum(spans[:, 1] - 1, 0)] >= 0x80))
    if cut.size:
        raise WireError(int(spans[cut[0], 1]), "an int64 list ends inside a varint (corrupt data)")
    data = _gather(buf, spans)
    last_bytes = np.flatnonzero(data < 0x80)  # one per varint
    counts = np.diff(np.searchsorted(last_bytes, np.cumsum(sizes)), prepend=0)
    return decode_varints(data).view(np.int64), counts


def parse_example(record: bytes) -> dict[str, np.ndarray]:
    """Decode one serialized ``tf.train.Example`` into ``{name: 1-D array}``: int64 for int64_list,
    float32 for float_list, an object array of bytes for bytes_list, and an empty float32 array for a
    Feature with no list set. Raises BertforgeError (a WireError with the byte offset) if malformed."""
    buf = np.frombuffer(record, dtype=np.uint8)
    out: dict[str, np.ndarray] = {}
    try:
        features = _scan_example(record, 0, len(record))
    except WireError as exc:
        raise WireError(exc.offset, f"not a valid tf.train.Example: {exc.detail}") from None
    for raw_name, (kind, flat) in features.items():
        spans = np.array(flat, dtype=np.int64).reshape(-1, 2)
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise BertforgeError(f"feature name {raw_name[:40]!r} is not UTF-8 (corrupt record)") from None
        if kind == _INT64:
            out[name] = _int64s(buf, spans)[0]
        elif kind == _FLOAT:
            out[name] = _gather(buf, spans).view("<f4").astype(np.float32)
        elif kind == _BYTES:
            values = np.empty(len(spans), dtype=object)
            values[:] = [record[s:e] for s, e in spans.tolist()]
            out[name] = values
        else:
            out[name] = np.zeros(0, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------- pretraining records


def read_pretraining_tfrecords(paths: PathLike | Iterable[PathLike]) -> dict[str, np.ndarray]:
    """Load the seven features of every record of Google-format pretraining TFRecords, in file order:
    input_ids, input_mask, segment_ids (N, max_seq_length); masked_lm_positions, masked_lm_ids,
    masked_lm_weights (N, max_predictions_per_seq); next_sentence_labels (N,). Integer features are
    int32, masked_lm_weights float32. Other features are ignored.

    Every record of every file must have all seven with the lengths of the first record. Raises
    BertforgeError naming the file and the record otherwise, or for a corrupt, truncated or empty file.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise BertforgeError("no TFRecord files given")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PRETRAINING_FEATURES}
    shape: dict[str, int] = {}  # feature -> values per record, fixed by the first record read
    for path in paths:
        count = 0
        for batch in _batches(path):
            for name, values in _decode_pretraining_batch(Path(path), batch, shape).items():
                parts[name].append(values)
            count += len(batch.starts)
        if count == 0:
            size = os.path.getsize(path)
            raise BertforgeError(
                f"{path}: holds no records ({size} bytes), expected pretraining TFRecords "
                "(create_pretraining_data.py output)"
            )
    return {name: np.concatenate(values) for name, values in parts.items()}


def _decode_pretraining_batch(path: Path, batch: _Batch, shape: dict[str, int]) -> dict[str, np.ndarray]:
    """Decode the seven features of a batch into (n, length) arrays, checking every record's lengths."""
    data = batch.data
    # per feature: its byte ranges in data (flat start, end, ...) and the record of each range
    wanted = [
        (name, name.encode(), _FLOAT if name in _FLOAT_FEATURES else _INT64, [], []) for name in PRETRAINING_FEATURES
    ]
    for i, (start, length) in enumerate(zip(batch.starts.tolist(), batch.lengths.tolist())):
        try:
            features = _scan_example(data, start, start + length)
        except WireError as exc:
            raise BertforgeError(
                f"{path}: {batch.where(i, exc.offset)}: not a valid tf.train.Example: {exc.detail}"
            ) from None
        for name, key, kind, spans, records in wanted:
            found = features.get(key)
            if found is None or found[0] != kind:
                _missing_feature(path, batch, i, name, kind, features)
            spans += found[1]
            if len(found[1]) == 2:  # one packed run: the usual case
                records.append(i)
            else:
                records += [i] * (len(found[1]) // 2)
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(batch.starts)
    result = {}
    for name, _, kind, flat, records in wanted:
        spans = np.array(flat, dtype=np.int64).reshape(-1, 2)
        if kind == _FLOAT:
            values = _gather(buf, spans).view("<f4").astype(np.float32)
            per_span = (spans[:, 1] - spans[:, 0]) // 4
        else:
            try:
                values, per_span = _int64s(buf, spans)
            except WireError as exc:
                i = int(np.searchsorted(batch.starts, exc.offset, side="right")) - 1
                raise BertforgeError(f"{path}: {batch.where(i, exc.offset)}: feature {name!r}: {exc.detail}") from None
        counts = np.bincount(np.array(records, dtype=np.int64), weights=per_span, minlength=n).astype(np.int64)
        _check_lengths(path, batch, name, counts, shape)
        if name not in _FLOAT_FEATURES:
            values = _to_int32(path, batch, name, values, shape[name])
        result[name] = values.reshape(n, shape[name]) if name != "next_sentence_labels" else values
    return result


def _missing_feature(
    path: Path, batch: _Batch, i: int, name: str, kind: int, features: dict[bytes, tuple[int, list[int]]]
) -> None:
    found = features.get(name.encode())
    have = ", ".join(sorted(n.decode("utf-8", "replace") for n in features)) or "none"
    problem = "has no" if found is None else f"has {_KIND_NAMES[found[0]]} for"
    raise BertforgeError(
        f"{path}: {batch.where(i)}: {problem} feature {name!r} ({_KIND_NAMES[kind]} expected); "
        f"a pretraining record needs {', '.join(PRETRAINING_FEATURES)} (it has: {have})"
    )


def _check_lengths(path: Path, batch: _Batch, name: str, counts: np.ndarray, shape: dict[str, int]) -> None:
    """Every record must hold as many values as the first record did; the group's features agree too."""
    group = SEQUENCE_FEATURES if name in SEQUENCE_FEATURES else PREDICTION_FEATURES
    if name == "next_sentence_labels":
        shape.setdefault(name, 1)
        reference = "one label"
    elif name == group[0]:
        shape.setdefault(name, int(counts[0]))
        reference = f"{shape[name]} values (as in the first record read)"
    else:
        shape.setdefault(name, shape[group[0]])
        reference = f"{shape[name]} values (as {group[0]!r} has)"
    bad = np.flatnonzero(counts != shape[name])
    if bad.size:
        i = int(bad[0])
        raise BertforgeError(
            f"{path}: {batch.where(i)}: feature {name!r} has {counts[i]} values, expected {reference}; "
            "every record must be padded to the same max_seq_length / max_predictions_per_seq"
        )


def _to_int32(path: Path, batch: _Batch, name: str, values: np.ndarray, width: int) -> np.ndarray:
    out = values.astype(np.int32)
    bad = np.flatnonzero(out != values)
    if bad.size:
        i = int(bad[0]) // width
        raise BertforgeError(
            f"{path}: {batch.where(i)}: feature {name!r} holds {values[bad[0]]}, outside the int32 range "
            "(corrupt record?)"
        )
    return out


# ------------------------------------------------------------------------------------------- writing


def encode_example(features: Mapping[str, object]) -> bytes:
    """Serialize ``{name: values}`` as a ``tf.train.Example``: float arrays become float_list (float32),
    integer or bool arrays int64_list, lists of bytes/str bytes_list. Lists are packed, as TF writes them."""
    entries = []
    for name, values in features.items():
        if isinstance(values, (bytes, str)):
            values = [values]
        items = list(values) if not isinstance(values, np.ndarray) else None
        if items is not None and items and all(isinstance(v, (bytes, str)) for v in items):
            body = length_delimited(
                _BYTES, b"".join(length_delimited(1, v.encode() if isinstance(v, str) else v) for v in items)
            )
        else:
            array = np.asarray(values).reshape(-1)
            if array.dtype.kind in "iub":
                packed = b"".join(encode_varint(int(v)) for v in array.tolist())
                body = length_delimited(_INT64, length_delimited(1, packed))
            elif array.dtype.kind == "f" or array.size == 0:
                body = length_delimited(_FLOAT, length_delimited(1, array.astype("<f4").tobytes()))
            else:
                raise BertforgeError(f"feature {name!r}: cannot store dtype {array.dtype} in a tf.train.Example")
        entries.append(length_delimited(1, length_delimited(1, name.encode()) + length_delimited(2, body)))
    return length_delimited(1, b"".join(entries))


def write_tfrecord(
    path: PathLike, examples: Iterable[Mapping[str, object] | bytes], *, compression: str | None = None
) -> None:
    """Write a TFRecord file that TensorFlow reads: each item is a feature mapping (see `encode_example`)
    or already-serialized record bytes. `compression` is None, "gzip" or "zlib" (TF's compression_type)."""
    records = [item if isinstance(item, bytes) else encode_example(item) for item in examples]
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    joined = np.frombuffer(b"".join(records), dtype=np.uint8)
    crcs = mask(crc32c_spans(joined, np.cumsum(lengths) - lengths, lengths).astype(np.int64)).tolist()
    framed = bytearray()
    for record, crc in zip(records, crcs):
        head = struct.pack("<Q", len(record))
        framed += head + struct.pack("<I", mask(crc32c(head))) + record + struct.pack("<I", crc)
    if compression == "gzip":
        framed = gzip.compress(bytes(framed), mtime=0)
    elif compression == "zlib":
        framed = zlib.compress(bytes(framed))
    elif compression is not None:
        raise BertforgeError(f"unknown TFRecord compression {compression!r}; expected None, 'gzip' or 'zlib'")
    with atomic_path(path) as tmp:
        tmp.write_bytes(framed)
