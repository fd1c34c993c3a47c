"""CRC-32C (Castagnoli), as TFRecord framing uses it: one record at a time, or thousands at once.

With google-crc32c's C extension (the CPU's CRC instructions) when it is installed: an order of magnitude
or more faster than the numpy code below, most of all on one short input or a long one. Without it, the same
values in plain Python (short inputs) and numpy (many spans at once).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

try:
    import google_crc32c
except ImportError:  # an optional speed-up
    google_crc32c = None

# None when only google-crc32c's pure-Python fallback is there: slower than the code below.
_NATIVE = google_crc32c.value if google_crc32c is not None and google_crc32c.implementation == "c" else None

_CRC_POLY = 0x82F63B78  # CRC-32C (Castagnoli), bit-reversed
_MASK_DELTA = 0xA282EAD8  # TF's crc32c::Mask: rotate right 15 bits, add this


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()
_TABLE_LIST: list[int] = _TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC-32C of `data`. Without google-crc32c this is plain Python, for short inputs (the 8-byte length
    headers)."""
    if _NATIVE is not None:
        return _NATIVE(data)
    return _crc32c_python(data)


def crc32c_of(buf, start: int, stop: int, chunk: int = 1 << 20) -> int:
    """CRC-32C of ``buf[start:stop]`` for a large buffer (an mmap): a MiB at a time with google-crc32c, so a
    tensor of hundreds of MB is never copied whole."""
    if _NATIVE is None:
        span = np.frombuffer(buf, dtype=np.uint8, count=stop - start, offset=start)
        return int(_crc32c_spans_numpy(span, np.zeros(1, np.int64), np.array([stop - start]))[0])
    crc = 0
    for begin in range(start, stop, chunk):
        crc = google_crc32c.extend(crc, bytes(buf[begin : min(begin + chunk, stop)]))
    return crc


def _crc32c_python(data: bytes) -> int:
    crc, table = 0xFFFFFFFF, _TABLE_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc: int | np.ndarray) -> int | np.ndarray:
    """TF stores CRCs masked, because a CRC of data that embeds CRCs is weak."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@lru_cache(maxsize=8)
def _zeros_operator(block: int) -> np.ndarray:
    """Tables (4, 256) of the linear map 'feed `block` zero bytes' on a zero-init CRC register, one table
    per register byte, so blocks' CRCs can be chained: crc(a + b) = Z_len(b)(crc(a)) ^ crc(b)."""
    basis = []
    for bit in range(32):
        crc = 1 << bit
        for _ in range(block):
            crc = _TABLE_LIST[crc & 0xFF] ^ (crc >> 8)
        basis.append(crc)
    tables = np.zeros((4, 256), dtype=np.uint32)
    values = np.arange(256)
    for k in range(4):
        for bit in range(8):
            tables[k][(values >> bit) & 1 == 1] ^= np.uint32(basis[8 * k + bit])
    return tables


def crc32c_spans(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of every ``buf[start:start + length]`` (uint8 buf): uint32, one per span."""
    if _NATIVE is not None:
        data = buf.tobytes()  # google-crc32c takes bytes only
        spans = zip(starts.tolist(), lengths.tolist())
        return np.fromiter((_NATIVE(data[s : s + n]) for s, n in spans), dtype=np.uint32, count=len(starts))
    return _crc32c_spans_numpy(buf, starts, lengths)


def _crc32c_spans_numpy(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """All spans at once in numpy.

    Each span is cut into blocks of B bytes, its first block the short one. The blocks' zero-init CRCs
    are computed together, one byte column per numpy step (leading zero padding leaves a zero-init CRC
    unchanged), then chained per span with `_zeros_operator`. The standard ~0 initial value is folded in
    by inverting each span's first 4 bytes, which is equivalent for spans of 4 bytes or more.
    """
    starts, lengths = starts.astype(np.int64), lengths.astype(np.int64)
    out = np.zeros(len(starts), dtype=np.uint32)
    if not len(starts):
        return out
    short = np.flatnonzero(lengths < 4)
    for i in short:  # init folding needs 4 bytes; these are rare (and an empty Example is 0 bytes)
        out[i] = _crc32c_python(buf[starts[i] : starts[i] + lengths[i]].tobytes())
    long_ = np.flatnonzero(lengths >= 4)
    if not len(long_):
        return out
    starts, lengths = starts[long_], lengths[long_]
    data = buf.copy()
    data[(starts[:, None] + np.arange(4)).ravel()] ^= 0xFF
    # B about sqrt(longest span): total work stays ~ bytes + spans * B, the step count ~ 2 * sqrt(longest).
    block = max(64, 1 << int(np.sqrt(int(lengths.max()))).bit_length())
    blocks = -(-lengths // block)
    first_end = starts + lengths - (blocks - 1) * block  # end of each span's (short) first block
    span_of = np.repeat(np.arange(len(starts)), blocks)
    offsets = np.cumsum(blocks) - blocks
    k = np.arange(int(blocks.sum())) - np.repeat(offsets, blocks)
    block_end = first_end[span_of] + k * block
    block_begin = np.where(k == 0, starts[span_of], block_end - block)
    crc = np.zeros(len(block_end), dtype=np.uint32)
    for j in range(block):
        pos = block_end - block + j
        byte = np.where(pos >= block_begin, data[np.maximum(pos, 0)], 0)
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    zeros = _zeros_operator(block)
    chained = crc[offsets].copy()
    for step in range(1, int(blocks.max())):
        active = np.flatnonzero(blocks > step)
        reg = chained[active]
        reg = zeros[0][reg & 0xFF] ^ zeros[1][(reg >> 8) & 0xFF] ^ zeros[2][(reg >> 16) & 0xFF] ^ zeros[3][reg >> 24]
        chained[active] = reg ^ crc[offsets[active] + step]
    out[long_] = chained ^ np.uint32(0xFFFFFFFF)
    return out
