"""PretrainingDataset on Google's TFRecords (written by TensorFlow) and on their conversion to our shards."""

from pathlib import Path

import numpy as np
import pytest

from bertforge.cli import main as cli
from bertforge.data.dataset import FEATURES, PretrainingDataset
from bertforge.errors import BertforgeError

TFRECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "tfrecord"


def test_reads_google_tfrecords_as_tensorflow_does():
    expected = np.load(TFRECORDS / "google_en.npz")
    for name in ("google_en.tfrecord", "google_en.tfrecord.gz"):
        dataset = PretrainingDataset(TFRECORDS / name)
        assert len(dataset) == len(expected["input_ids"]) == 303
        for i in (0, 1, 150, 302):
            item = dataset[i]
            assert set(item) == set(FEATURES)
            for key in FEATURES:
                assert np.array_equal(item[key], expected[key][i].reshape(item[key].shape)), (name, key, i)


def test_convert_data_keeps_every_record(tmp_path, sample, capsys):
    assert (
        cli(
            [
                "convert-data",
                "--input",
                str(TFRECORDS / "google_en.tfrecord"),
                "--output",
                str(tmp_path / "ds"),
                "--vocab",
                str(sample("vocab-en")),
            ]
        )
        == 0
    )
    assert "303 instances" in capsys.readouterr().out
    source, converted = PretrainingDataset(TFRECORDS / "google_en.tfrecord"), PretrainingDataset(tmp_path / "ds")
    assert len(converted) == len(source)
    for i in range(len(source)):
        a, b = source[i], converted[i]
        for key in FEATURES:
            assert np.array_equal(a[key], b[key]), (key, i)
    converted.check_vocab(30522, sample("vocab-en"))
    with pytest.raises(BertforgeError, match="different vocab"):
        converted.check_vocab(30522, sample("vocab-zh"))
    # shards are far smaller than the TFRecord: ragged uint16 ids instead of padded int64 protobufs
    size = sum(p.stat().st_size for p in (tmp_path / "ds").rglob("*.npy"))
    assert size < (TFRECORDS / "google_en.tfrecord").stat().st_size / 2
    assert cli(["inspect", str(tmp_path / "ds"), "--limit", "1"]) == 0
    assert "[CLS]" in capsys.readouterr().out


def test_convert_data_rejects_a_smaller_vocab(tmp_path, sample):
    assert (
        cli(
            [
                "convert-data",
                "--input",
                str(TFRECORDS / "google_en.tfrecord"),
                "--output",
                str(tmp_path / "ds"),
                "--vocab",
                str(sample("vocab-zh")),
            ]
        )
        == 2
    )


def test_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("These are my notes, plain text and not records.\n")
    with pytest.raises(BertforgeError, match="not a TFRecord"):
        PretrainingDataset(tmp_path / "notes.txt")
    with pytest.raises(BertforgeError, match="no schema.json"):
        PretrainingDataset(tmp_path)
    with pytest.raises(BertforgeError, match="neither a bertforge dataset"):
        PretrainingDataset(tmp_path / "missing")
