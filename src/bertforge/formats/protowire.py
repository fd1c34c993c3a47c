"""Protobuf wire format by hand: the few pieces bertforge needs to read and write MindSpore checkpoints and
TensorFlow ``tf.train.Example`` records without protobuf (or the frameworks) installed.

Wire format recap: a message is a run of fields, each ``key = field_number << 3 | wire_type`` as a varint,
then the value: wire type 0 a varint, 1 eight bytes, 2 a varint length and that many bytes (strings,
sub-messages, packed repeated scalars), 5 four bytes. Varints are little-endian base 128; int64 values
are two's complement, so a negative one takes 10 bytes.
"""

from __future__ import annotations

import numpy as np

from bertforge.errors import BertforgeError

_MAX_VARINT_BYTES = 10


class WireError(BertforgeError):
    """Malformed protobuf at byte `offset` of a buffer; callers re-raise it naming the file and record."""

    def __init__(self, offset: int, detail: str) -> None:
        super().__init__(f"byte {offset}: {detail}")
        self.offset, self.detail = offset, detail


def encode_varint(value: int) -> bytes:
    """Varint bytes of `value`; a negative value is encoded as its int64 two's complement, like protobuf."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field: int, data: bytes) -> bytes:
    """One wire-type-2 field: key, length, data."""
    return encode_varint(field << 3 | 2) + encode_varint(len(data)) + data


def decode_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned varint at `buf[pos:]`, which must end before `end`: (value, position after it)."""
    value = shift = 0
    start = pos
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFF_FFFF_FFFF_FFFF, pos  # a 10th byte may carry bits past 64: dropped, as protobuf does
        shift += 7
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise WireError(start, "a varint longer than 10 bytes (corrupt data)")
    raise WireError(start, "data ends inside a varint (truncated or corrupt)")


def decode_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The length prefix of a wire-type-2 field at `pos`: (position of its data, position after it)."""
    n, pos = decode_varint(buf, pos, end)
    if n > end - pos:
        raise WireError(pos, f"a field claims {n} bytes but only {end - pos} remain (truncated or corrupt)")
    return pos, pos + n


def skip_field(buf: bytes, pos: int, end: int, key: int, key_at: int) -> int:
    """Skip the value of a field whose key (read at `key_at`) was `key`: protobuf readers must ignore unknown
    fields. Returns the position after the value."""
    wire_type = key & 7
    if wire_type == 0:
        return decode_varint(buf, pos, end)[1]
    if wire_type == 2:
        return decode_length(buf, pos, end)[1]
    if wire_type in (1, 5):
        size = 8 if wire_type == 1 else 4
        if size > end - pos:
            raise WireError(pos, f"a {size}-byte field runs past the end of its message (truncated or corrupt)")
        return pos + size
    raise WireError(key_at, f"field {key >> 3} has wire type {wire_type}, which is not valid here (corrupt data)")


def decode_varints(data: np.ndarray) -> np.ndarray:
    """Decode a run of concatenated varints (a packed repeated field) at numpy speed.

    `data` is uint8 and must end with a complete varint (callers check that every list ends on a byte
    < 0x80). Returns uint64 values; view them as int64 for protobuf int64 fields.
    """
    ends = np.flatnonzero(data < 0x80)  # the last byte of each varint
    if ends.size == 0:
        return np.zeros(0, dtype=np.uint64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    longest = int(sizes.max())
    if longest > _MAX_VARINT_BYTES:
        at = int(starts[np.argmax(sizes > _MAX_VARINT_BYTES)])
        raise WireError(at, "a varint longer than 10 bytes (corrupt data)")
    # Built from the last byte back, one vector pass per byte position (ids take 1 to 3 bytes), in
    # uint32 when no value can exceed 28 bits.
    dtype = np.uint32 if longest <= 4 else np.uint64
    digits = (data & 0x7F).astype(dtype)
    values = digits[ends]
    for k in range(1, longest):
        values = np.where(sizes > k, values << dtype(7) | digits[np.maximum(ends - k, 0)], values)
    return values.astype(np.uint64)
