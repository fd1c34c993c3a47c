"""CRC-32C (Castagnoli), as TFRecord framing uses it: one record at a time, or thousands at once with numpy."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

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
    """CRC-32C of `data` in plain Python: for short inputs (the 8-byte length headers)."""
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
    """CRC-32C of every ``buf[start:start + length]`` (uint8 buf), all spans at once.

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
        out[i] = crc32c(buf[starts[i] : starts[i] + lengths[i]].tobytes())
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
