"""A full disk while training is one line naming what was being written, not a traceback."""

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from bertforge.cli import main as cli
from tests.polarity import sentences, write_csv

TINY = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.yaml"


@pytest.fixture
def full_disk(monkeypatch):
    """The filesystem reports no space left (writes fail with whatever error their library raises)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("Usage", "total used free")(9, 9, 0))


def test_pretrain_on_a_full_disk(sample, tmp_path, capsys, monkeypatch, full_disk):
    from bertforge.data.create import CreateOptions, create_pretraining_data

    text = "\n\n".join("\n".join(f"Document {d} says fact {s} here." for s in range(4)) for d in range(8))
    (tmp_path / "in.txt").write_text(text + "\n")
    options = CreateOptions(dupe_factor=1, max_seq_length=32, max_predictions_per_seq=5)
    create_pretraining_data([tmp_path / "in.txt"], sample("vocab-en"), tmp_path / "data", options, progress=False)

    def full(*args, **kwargs):  # what torch.save raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", full)
    args = ["pretrain", "--config", str(TINY), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run")]
    assert cli([*args, "--train-steps", "1", "--batch-size", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("bertforge pretrain: error: no space left on /"), err
    assert f"while writing {tmp_path / 'run' / 'checkpoints' / 'step-'}" in last, err


def test_finetune_on_a_full_disk(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bertforge.modeling.checkpoint.save_file", full)
    train = write_csv(tmp_path / "train.csv", sentences(32, 1))
    out = tmp_path / "out"
    args = ["--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out, "--epochs", 1]
    assert cli(["finetune", "classification", "--quiet", "--device", "cpu", *map(str, args)]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("bertforge finetune: error: no space left on /"), err
    assert f"while writing {out}" in last and ".tmp" not in last, err
