"""``tf.train.Example`` records without TensorFlow or protobuf: parsing and encoding. The schema::

    Example  { Features features = 1 }
    Features { map<string, Feature> feature = 1 }    # entries: { string key = 1; Feature value = 2 }
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }
    *List    { repeated <bytes | float | int64> value = 1 }  # numeric lists usually packed

For speed over many records, `scan_example` only walks an Example's fields and returns the byte ranges of
each feature's values; `gather_bytes` and `decode_int64s` then decode the ranges of thousands of records at
once with numpy (``protowire.decode_varints``). `parse_example` does both for a single record.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.formats.protowire import (
    WireError,
    decode_varint,
    decode_varints,
    encode_varint,
    length_delimited,
    skip_field,
)

BYTES, FLOAT, INT64 = 1, 2, 3  # Feature.kind field numbers
KIND_NAMES = {0: "an empty Feature", BYTES: "bytes_list", FLOAT: "float_list", INT64: "int64_list"}


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


def scan_example(buf: bytes, pos: int, end: int) -> dict[bytes, tuple[int, list[int]]]:
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
    oneof, spans = 0, []
    while pos < end:
        key, start, list_end = _field(buf, pos, end)
        field = key >> 3
        if list_end < 0 or field not in (BYTES, FLOAT, INT64):
            pos = _skip(buf, key, start, list_end, end, pos)
            continue
        if field != oneof:  # oneof: a later member replaces an earlier one
            oneof, spans = field, []
        pos = start
        while pos < list_end:
            key, start, stop = _field(buf, pos, list_end)
            if key == 0x0A:  # a bytes value, or a packed run of numbers
                if oneof == FLOAT and (stop - start) % 4:
                    raise WireError(start, f"a packed float list of {stop - start} bytes (not a multiple of 4)")
                spans += (start, stop)
            elif key == 0x08 and oneof == INT64:  # one unpacked int64
                stop = decode_varint(buf, start, list_end)[1]
                spans += (start, stop)
            elif key == 0x0D and oneof == FLOAT:  # one unpacked float
                stop = skip_field(buf, start, list_end, key, pos)
                spans += (start, stop)
            pos = _skip(buf, key, start, stop, list_end, pos)
    return oneof, spans


def gather_bytes(buf: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Concatenate the byte ranges `spans` (shape (n, 2): start, end) of buf into one uint8 array."""
    sizes = spans[:, 1] - spans[:, 0]
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint8)
    keep = sizes > 0
    spans, sizes = spans[keep], sizes[keep]
    index = np.arange(total, dtype=np.int64) + np.repeat(spans[:, 0] - (np.cumsum(sizes) - sizes), sizes)
    return buf[index]


def decode_int64s(buf: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int64 values in varint ranges (n, 2) of buf, and how many each range holds. Raises WireError
    for a range that ends inside a varint."""
    sizes = spans[:, 1] - spans[:, 0]
    cut = np.flatnonzero((sizes > 0) & (buf[np.maximum(spans[:, 1] - 1, 0)] >= 0x80))
    if cut.size:
        raise WireError(int(spans[cut[0], 1]), "an int64 list ends inside a varint (corrupt data)")
    data = gather_bytes(buf, spans)
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
        features = scan_example(record, 0, len(record))
    except WireError as exc:
        raise WireError(exc.offset, f"not a valid tf.train.Example: {exc.detail}") from None
    for raw_name, (oneof, flat) in features.items():
        spans = np.array(flat, dtype=np.int64).reshape(-1, 2)
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise BertforgeError(f"feature name {raw_name[:40]!r} is not UTF-8 (corrupt record)") from None
        if oneof == INT64:
            out[name] = decode_int64s(buf, spans)[0]
        elif oneof == FLOAT:
            out[name] = gather_bytes(buf, spans).view("<f4").astype(np.float32)
        elif oneof == BYTES:
            values = np.empty(len(spans), dtype=object)
            values[:] = [record[s:e] for s, e in spans.tolist()]
            out[name] = values
        else:
            out[name] = np.zeros(0, dtype=np.float32)
    return out


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
                BYTES, b"".join(length_delimited(1, v.encode() if isinstance(v, str) else v) for v in items)
            )
        else:
            array = np.asarray(values).reshape(-1)
            if array.dtype.kind in "iub":
                packed = b"".join(encode_varint(int(v)) for v in array.tolist())
                body = length_delimited(INT64, length_delimited(1, packed))
            elif array.dtype.kind in "f" or array.size == 0:
                body = length_delimited(FLOAT, length_delimited(1, array.astype("<f4").tobytes()))
            else:
                raise BertforgeError(f"feature {name!r}: cannot store dtype {array.dtype} in a tf.train.Example")
        entries.append(length_delimited(1, length_delimited(1, name.encode()) + length_delimited(2, body)))
    return length_delimited(1, b"".join(entries))
