"""CRC-32C: the standard check value, all spans at once equal to one at a time, and google-crc32c's C
extension (when installed) equal to the pure Python/numpy code."""

import numpy as np
import pytest

from bertforge.formats import crc32c as crc32c_module
from bertforge.formats.crc32c import crc32c, crc32c_spans

LENGTHS = np.array([0, 1, 3, 4, 5, 63, 64, 65, 100, 1300, 5000, 70000, 1 << 20])


def random_spans(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, 256, int(LENGTHS.sum()) + 100, dtype=np.uint8)
    return buf, np.cumsum(LENGTHS) - LENGTHS + 7, LENGTHS


@pytest.fixture(params=["google-crc32c", "python"])
def implementation(request, monkeypatch):
    """Run a test with google-crc32c's C extension, then with the pure Python/numpy code."""
    if request.param == "python":
        monkeypatch.setattr(crc32c_module, "_NATIVE", None)
    elif crc32c_module._NATIVE is None:
        pytest.skip("google-crc32c's C extension is not installed")
    return request.param


def test_crc32c(implementation):
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    buf, starts, lengths = random_spans()
    got = crc32c_spans(buf, starts, lengths)
    assert got.dtype == np.uint32
    assert got.tolist() == [crc32c(buf[s : s + n].tobytes()) for s, n in zip(starts, lengths)]
    assert crc32c_spans(buf, starts[:0], lengths[:0]).tolist() == []


def test_google_crc32c_equals_the_pure_code(monkeypatch):
    if crc32c_module._NATIVE is None:
        pytest.skip("google-crc32c's C extension is not installed")
    buf, starts, lengths = random_spans(seed=1)
    inputs = [buf[s : s + n].tobytes() for s, n in zip(starts, lengths)]
    native = [crc32c(data) for data in inputs], crc32c_spans(buf, starts, lengths).tolist()
    monkeypatch.setattr(crc32c_module, "_NATIVE", None)
    assert ([crc32c(data) for data in inputs], crc32c_spans(buf, starts, lengths).tolist()) == native
