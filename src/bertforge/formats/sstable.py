"""LevelDB's sorted table ("SSTable") as TensorFlow's ``lib/io/table`` writes it: the ``.index`` file of a
checkpoint bundle, read and written without TensorFlow.

Layout (LevelDB's ``table_format.md``; TF never compresses bundle indexes and writes no filter block)::

    [data block][trailer] ... [metaindex block][trailer] [index block][trailer] [footer, 48 bytes]

- a block is a run of entries ``varint shared, varint non_shared, varint value_length, key[shared:],
  value``, where ``shared`` bytes of the key are taken from the previous key (0 at every restart point),
  then the restart offsets (uint32 each) and their count (uint32), all little-endian;
- a trailer is one compression byte (0: none) and the masked CRC32C of the block and that byte;
- the index block maps a key >= every key of a data block (and below the next block's) to the data
  block's handle ``varint offset, varint size`` (size without the trailer);
- the footer is the metaindex and index handles, zero-padded to 40 bytes, then the magic number.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from bertforge.formats.crc32c import crc32c, mask
from bertforge.formats.protowire import WireError, decode_varint, encode_varint

MAGIC = 0xDB4775248B80FB57  # kTableMagicNumber, LevelDB's and TensorFlow's
FOOTER_BYTES = 48
_HANDLES_BYTES = 40  # two BlockHandles of at most 20 bytes each
_TRAILER_BYTES = 5
_NO_COMPRESSION, _SNAPPY = 0, 1
BLOCK_BYTES = 262144  # TensorFlow's table::Options block_size
RESTART_INTERVAL = 16  # and block_restart_interval


class TableError(WireError):
    """A malformed table at byte `offset` of the file; the caller names the file."""


# ------------------------------------------------------------------------------------------------ reading
def read_table(data: bytes | memoryview) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a table, in key order. Every block's CRC is checked; raises TableError."""
    data = memoryview(data)
    if len(data) < FOOTER_BYTES:
        raise TableError(0, f"{len(data)} bytes, shorter than a table's {FOOTER_BYTES}-byte footer (truncated)")
    footer = len(data) - FOOTER_BYTES
    magic = int.from_bytes(data[-8:], "little")
    if magic != MAGIC:
        raise TableError(
            len(data) - 8, f"footer magic {magic:#018x}, expected {MAGIC:#018x} (not a table, or truncated)"
        )
    _, pos = _handle(data, footer, footer + _HANDLES_BYTES, "the metaindex handle")  # TF writes it empty
    index, _ = _handle(data, pos, footer + _HANDLES_BYTES, "the index handle")
    previous: bytes | None = None
    for handle_key, handle in _block_entries(data, *index, footer, "the index block"):
        block, end = _handle(handle, 0, len(handle), f"the index entry for key {bytes(handle_key)[:40]!r}")
        if end != len(handle):
            raise TableError(index[0], f"index entry for key {bytes(handle_key)[:40]!r} has trailing bytes")
        for key, value in _block_entries(data, *block, index[0], f"the data block at byte {block[0]}"):
            if previous is not None and key <= previous:
                raise TableError(block[0], f"key {key[:40]!r} is not above the key before it (corrupt table)")
            previous = key
            yield key, value


def _handle(buf: memoryview | bytes, pos: int, end: int, what: str) -> tuple[tuple[int, int], int]:
    """A BlockHandle at `pos`: ((offset, size), position after it)."""
    try:
        offset, pos = decode_varint(buf, pos, end)
        size, pos = decode_varint(buf, pos, end)
    except WireError as exc:
        raise TableError(exc.offset, f"{what}: {exc.detail}") from None
    return (offset, size), pos


def _block_entries(
    data: memoryview, offset: int, size: int, limit: int, what: str
) -> Iterator[tuple[bytes, memoryview]]:
    """The entries of the block at `offset` (`size` bytes before its trailer), which must end by `limit`."""
    if offset + size + _TRAILER_BYTES > limit or size < 4:
        raise TableError(
            offset,
            f"{what} claims bytes {offset}..{offset + size + _TRAILER_BYTES}, outside the "
            f"{limit} bytes before it (truncated or corrupt)",
        )
    block = data[offset : offset + size]
    kind = data[offset + size]
    stored = int.from_bytes(data[offset + size + 1 : offset + size + _TRAILER_BYTES], "little")
    actual = mask(crc32c(bytes(data[offset : offset + size + 1])))
    if stored != actual:
        raise TableError(
            offset, f"{what} fails its CRC32C check (stored {stored:#010x}, computed {actual:#010x}): corrupt file"
        )
    if kind == _SNAPPY:
        raise TableError(offset, f"{what} is Snappy-compressed, which TensorFlow never writes for checkpoints")
    if kind != _NO_COMPRESSION:
        raise TableError(offset, f"{what} has compression type {kind} (corrupt file)")
    restarts = int.from_bytes(block[-4:], "little")
    entries_end = size - 4 * (restarts + 1)
    if restarts < 1 or entries_end < 0:
        raise TableError(offset, f"{what} has {restarts} restart points in {size} bytes (corrupt file)")
    pos, key = 0, b""
    try:
        while pos < entries_end:
            at = pos
            shared, pos = decode_varint(block, pos, entries_end)
            unshared, pos = decode_varint(block, pos, entries_end)
            length, pos = decode_varint(block, pos, entries_end)
            if shared > len(key) or unshared + length > entries_end - pos:
                raise WireError(at, "an entry runs past its block or shares more key than there is")
            key = key[:shared] + bytes(block[pos : pos + unshared])
            pos += unshared
            yield key, block[pos : pos + length]
            pos += length
    except WireError as exc:
        raise TableError(offset + exc.offset, f"{what}: {exc.detail} (corrupt file)") from None


# ------------------------------------------------------------------------------------------------ writing
def build_table(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The table holding `items` (keys strictly increasing), byte for byte as TensorFlow's TableBuilder lays
    it out: 256 KiB blocks, a restart point every 16 keys (every key in the index block), index keys
    shortened between blocks, an empty metaindex block."""
    out = bytearray()
    index = _BlockBuilder(restart_interval=1)
    block = _BlockBuilder(RESTART_INTERVAL)
    pending: bytes | None = None  # the handle of a flushed block, indexed once the next key is known
    index_key = b""  # that block's last key
    for key, value in items:
        if block.count and key <= block.last_key:
            raise ValueError(f"table keys must be strictly increasing: {key!r} after {block.last_key!r}")
        if pending is not None:
            index.add(_shortest_separator(index_key, key), pending)
            pending = None
        block.add(key, value)
        if block.size() >= BLOCK_BYTES:
            pending, index_key = _write_block(out, block.finish()), block.last_key
            block.reset()
    if block.count:
        pending, index_key = _write_block(out, block.finish()), block.last_key
    if pending is not None:
        index.add(_short_successor(index_key), pending)
    metaindex = _write_block(out, _BlockBuilder(RESTART_INTERVAL).finish())
    index_handle = _write_block(out, index.finish())
    out += (metaindex + index_handle).ljust(_HANDLES_BYTES, b"\0") + MAGIC.to_bytes(8, "little")
    return bytes(out)


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's BytewiseComparator::FindShortestSeparator: a short key in [start, limit)."""
    common = 0
    while common < min(len(start), len(limit)) and start[common] == limit[common]:
        common += 1
    if common < min(len(start), len(limit)) and start[common] < 0xFF and start[common] + 1 < limit[common]:
        return start[:common] + bytes([start[common] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """LevelDB's FindShortSuccessor: a short key >= `key`."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def _write_block(out: bytearray, block: bytes) -> bytes:
    """Append a block and its trailer; return its handle."""
    handle = encode_varint(len(out)) + encode_varint(len(block))
    out += block
    out += bytes([_NO_COMPRESSION]) + mask(crc32c(block + bytes([_NO_COMPRESSION]))).to_bytes(4, "little")
    return handle


class _BlockBuilder:
    """Entries with prefix-compressed keys and a restart point every `restart_interval` keys."""

    def __init__(self, restart_interval: int) -> None:
        self.restart_interval = restart_interval
        self.reset()

    def reset(self) -> None:
        self.buf, self.restarts, self.count, self.last_key = bytearray(), [0], 0, b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count % self.restart_interval == 0:
            if self.count:
                self.restarts.append(len(self.buf))
        else:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        self.buf += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        self.buf += key[shared:] + value
        self.count += 1
        self.last_key = key

    def size(self) -> int:
        return len(self.buf) + 4 * (len(self.restarts) + 1)

    def finish(self) -> bytes:
        return bytes(self.buf) + struct.pack(f"<{len(self.restarts) + 1}I", *self.restarts, len(self.restarts))
