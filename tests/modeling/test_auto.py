"""load_model: the model class picked from a checkpoint's tensor names, its weights read once."""

import pytest
import torch

from bertforge.modeling import BertConfig, BertForPreTraining, BertForSequenceClassification, auto, checkpoint

TINY = BertConfig.from_preset("tiny", vocab_size=120, max_position_embeddings=40)


def save(model: checkpoint.PretrainedMixin, tmp_path, layout: str):
    """`model` saved as a model.safetensors or pytorch_model.bin directory, or a model zoo .ckpt file:
    (path, the config= a .ckpt needs)."""
    if layout == "ckpt":
        return model.save_mindspore(tmp_path / "bert.ckpt"), model.config
    folder = model.save_pretrained(tmp_path / "model")
    if layout == "bin":
        torch.save(checkpoint.full_state_dict(model), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder, None


@pytest.mark.parametrize(
    "layout, model_class",
    [
        ("safetensors", BertForPreTraining),
        ("safetensors", BertForSequenceClassification),
        ("bin", BertForSequenceClassification),
        ("ckpt", BertForPreTraining),
    ],
)
def test_load_model_detects_the_head_and_reads_the_weights_once(tmp_path, monkeypatch, layout, model_class):
    torch.manual_seed(0)
    model = model_class(TINY)
    path, config = save(model, tmp_path, layout)
    calls = []

    def counted_read_weights(weights):
        calls.append(weights)
        return read_weights(weights)

    read_weights = checkpoint.read_weights
    monkeypatch.setattr(checkpoint, "read_weights", counted_read_weights)
    monkeypatch.setattr(auto, "read_weights", counted_read_weights)
    loaded = auto.load_model(path, config=config)
    assert type(loaded) is model_class
    assert len(calls) == 1
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
