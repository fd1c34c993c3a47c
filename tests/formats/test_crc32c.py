"""CRC-32C: the standard check value, and all spans at once equal to one at a time."""

import numpy as np

from bertforge.formats.crc32c import crc32c, crc32c_spans


def test_crc32c():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    rng = np.random.default_rng(0)
    lengths = np.array([0, 1, 3, 4, 5, 63, 64, 65, 1300, 5000, 70000])
    buf = rng.integers(0, 256, int(lengths.sum()) + 100, dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths + 7
    got = crc32c_spans(buf, starts, lengths)
    assert got.tolist() == [crc32c(buf[s : s + n].tobytes()) for s, n in zip(starts, lengths)]
