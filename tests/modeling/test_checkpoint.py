"""Damaged weights files: a one-line error naming the file, from the API and from every command."""

from pathlib import Path

import pytest

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.modeling import BertConfig, BertForPreTraining

TFRECORD = Path(__file__).resolve().parents[1] / "fixtures" / "tfrecord" / "google_en.tfrecord"


@pytest.mark.parametrize("damage", ["empty", "truncated", "cut in the header"])
def test_a_truncated_or_empty_safetensors_file_is_a_one_line_error(tmp_path, capsys, damage):
    BertForPreTraining(BertConfig.from_preset("tiny")).save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "cut in the header": data[:20]}[damage])
    expected = f"{weights}: not a readable safetensors file, truncated or damaged"
    with pytest.raises(BertforgeError, match=expected):
        BertForPreTraining.from_pretrained(tmp_path / "model")
    for args in (
        ["convert", str(tmp_path / "model"), str(tmp_path / "out")],
        ["convert", str(weights), str(tmp_path / "out"), "--head", "pretraining"],
        ["pretrain-eval", "--model", str(tmp_path / "model"), "--data", str(TFRECORD), "--quiet"],
    ):
        assert cli(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err


def test_convert_on_a_full_disk_and_through_a_symbolic_link(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    from safetensors import SafetensorError

    BertForPreTraining(BertConfig.from_preset("tiny")).save_pretrained(tmp_path / "model")
    (tmp_path / "target").mkdir()
    BertForPreTraining(BertConfig.from_preset("tiny")).save_pretrained(tmp_path / "target")
    before = (tmp_path / "target" / "model.safetensors").read_bytes()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert cli(["convert", str(tmp_path / "model"), str(tmp_path / "link"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite does not replace files through a link" in err, err
    assert (tmp_path / "target" / "model.safetensors").read_bytes() == before

    def full(*args, **kwargs):  # what safetensors raises on a full disk: no errno
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("bertforge.modeling.checkpoint.save_file", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("Usage", "total used free")(9, 9, 0))
    assert cli(["convert", str(tmp_path / "model"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"while writing {tmp_path / 'out' / 'model.safetensors'}" in err, err
