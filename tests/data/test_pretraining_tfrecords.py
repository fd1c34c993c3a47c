"""Google pretraining TFRecords (TFRecord framing, tf.train.Example, the seven features) read and written
against files written by Google's create_pretraining_data.py and TF.

The fixtures and their .npz expectations (what tf.data + tf.io.parse_single_example returned) come from
scripts/make_tfrecord_fixtures.py; TensorFlow itself is not needed here.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bertforge.data.pretraining_tfrecords import PRETRAINING_FEATURES, read_pretraining_tfrecords
from bertforge.errors import BertforgeError
from bertforge.formats import tfrecord
from bertforge.formats.example_proto import encode_example, parse_example
from bertforge.formats.tfrecord import iter_tfrecord, write_tfrecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfrecord"
MAIN = FIXTURES / "google_en.tfrecord"
VARIANTS = ["google_en.tfrecord", "google_en.tfrecord.gz", "google_en_zlib.tfrecord"]


def expected(name: str = "google_en") -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as npz:
        return {key: npz[key] for key in npz.files}


def assert_matches_tf(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rows: int | None = None) -> None:
    assert list(got) == list(PRETRAINING_FEATURES)
    for name in PRETRAINING_FEATURES:
        value = want[name][:rows]
        if name == "next_sentence_labels":
            value = value[:, 0]  # TF's FixedLenFeature([1]); ours is (N,)
        assert got[name].dtype == (np.float32 if name == "masked_lm_weights" else np.int32), name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def record_offsets(path: Path) -> list[int]:
    """Byte offset of every record's frame in a plain TFRecord file."""
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return offsets


def pretraining_example(seq: int = 8, preds: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(0, 30522, seq),
        "input_mask": np.ones(seq, dtype=np.int64),
        "segment_ids": rng.integers(0, 2, seq),
        "masked_lm_positions": rng.integers(0, seq, preds),
        "masked_lm_ids": rng.integers(0, 30522, preds),
        "masked_lm_weights": np.ones(preds, dtype=np.float32),
        "next_sentence_labels": np.array([seed % 2]),
    }


# --------------------------------------------------------------------------------- real TF output


@pytest.mark.parametrize("name", VARIANTS)
def test_real_google_file_parses_to_what_tf_parsed(name):
    got = read_pretraining_tfrecords(FIXTURES / name)
    assert_matches_tf(got, expected())
    assert got["input_ids"].shape == (303, 128) and got["masked_lm_ids"].shape == (303, 20)


def test_records_and_examples_match_tf():
    records = list(iter_tfrecord(MAIN))
    want = expected()
    assert len(records) == len(want["input_ids"])
    example = parse_example(records[7])
    assert set(example) == set(PRETRAINING_FEATURES)
    for name in PRETRAINING_FEATURES:
        assert example[name].dtype == want[name].dtype, name  # int64 / float32, as TF returns
        np.testing.assert_array_equal(example[name], want[name][7], err_msg=name)


def test_many_small_batches_and_several_files(monkeypatch):
    """Records straddle read chunks and batches; record numbering and files concatenate in order."""
    monkeypatch.setattr(tfrecord, "_BATCH_BYTES", 1000)
    got = read_pretraining_tfrecords([MAIN, FIXTURES / "google_en.tfrecord.gz"])
    want = {name: np.concatenate([value, value]) for name, value in expected().items()}
    assert_matches_tf(got, want)


def test_unknown_features_and_unpacked_fields_as_tf_reads_them():
    """google_en_extra.tfrecord: extra bytes/float/negative int64 features in every record; record 3
    hand-encoded with unpacked repeated fields and its map entries in reverse order."""
    path = FIXTURES / "google_en_extra.tfrecord"
    assert_matches_tf(read_pretraining_tfrecords(path), expected(), rows=12)
    tf_extra = expected("google_en_extra")
    byte_values = np.split(tf_extra["extra_bytes"], np.cumsum(tf_extra["extra_bytes_value_lengths"])[:-1])
    tf_extra["extra_bytes"] = np.array([v.tobytes() for v in byte_values], dtype=object)
    for name in ["extra_bytes", "extra_floats", "extra_int64"]:
        rows = np.split(tf_extra[name], np.cumsum(tf_extra[f"{name}_row_lengths"])[:-1])
        for i, record in enumerate(iter_tfrecord(path)):
            value = parse_example(record)[name]
            assert value.dtype == rows[i].dtype, name
            assert list(value) == list(rows[i]), (name, i)
    assert parse_example(list(iter_tfrecord(path))[3])["extra_int64"].tolist() == [-1, -(2**63), 2**63 - 1, 3]


# ------------------------------------------------------------------------------------------- writer


def test_writer_reproduces_tf_files_byte_for_byte(tmp_path):
    write_tfrecord(tmp_path / "copy.tfrecord", list(iter_tfrecord(MAIN)))
    assert (tmp_path / "copy.tfrecord").read_bytes() == MAIN.read_bytes()


@pytest.mark.parametrize("compression", [None, "gzip", "zlib"])
def test_round_trip(tmp_path, compression):
    examples = [pretraining_example(seed=i) for i in range(5)]
    examples[2]["comment"] = [b"\x00bytes", "text", b""]
    examples[3]["extra"] = np.array([-(2**63), -1, 2**40])
    path = tmp_path / "rt.tfrecord"
    write_tfrecord(path, examples, compression=compression)
    parsed = [parse_example(record) for record in iter_tfrecord(path)]
    assert parsed[2]["comment"].tolist() == [b"\x00bytes", b"text", b""]
    assert parsed[3]["extra"].tolist() == [-(2**63), -1, 2**40]
    got = read_pretraining_tfrecords(path)
    for name in PRETRAINING_FEATURES:
        want = np.stack([e[name] for e in examples]).astype(got[name].dtype)
        np.testing.assert_array_equal(got[name], want.reshape(got[name].shape), err_msg=name)


# ------------------------------------------------------------------------------------------- errors


def test_data_crc_corruption_names_file_and_record(tmp_path):
    data = bytearray(MAIN.read_bytes())
    offsets = record_offsets(MAIN)
    data[offsets[5] + 40] ^= 0x01
    (tmp_path / "bad.tfrecord").write_bytes(data)
    with pytest.raises(BertforgeError, match=r"bad\.tfrecord: record 5 \(byte \d+\): the CRC of the record's"):
        read_pretraining_tfrecords(tmp_path / "bad.tfrecord")


def test_length_crc_corruption(tmp_path, monkeypatch):
    monkeypatch.setattr(tfrecord, "_BATCH_BYTES", 1000)  # the damage lies in a later batch
    data = bytearray(MAIN.read_bytes())
    offset = record_offsets(MAIN)[200]
    data[offset + 1] ^= 0x40
    (tmp_path / "bad.tfrecord").write_bytes(data)
    with pytest.raises(BertforgeError, match=rf"record 200 \(byte {offset}\): the CRC of the record length"):
        list(iter_tfrecord(tmp_path / "bad.tfrecord"))


def test_truncation(tmp_path):
    data = MAIN.read_bytes()
    offset = record_offsets(MAIN)[100]
    (tmp_path / "cut.tfrecord").write_bytes(data[: offset + 300])
    with pytest.raises(BertforgeError, match=rf"cut\.tfrecord: record 100 \(byte {offset}\): .*truncated"):
        read_pretraining_tfrecords(tmp_path / "cut.tfrecord")
    (tmp_path / "cut.tfrecord").write_bytes(data[: offset + 5])
    with pytest.raises(BertforgeError, match="record 100 .*12-byte header"):
        list(iter_tfrecord(tmp_path / "cut.tfrecord"))
    gz = (FIXTURES / "google_en.tfrecord.gz").read_bytes()
    (tmp_path / "cut.tfrecord.gz").write_bytes(gz[: len(gz) // 2])
    records = []
    with pytest.raises(BertforgeError, match=r"cut\.tfrecord\.gz: record (\d+) .*gzip.*truncated") as error:
        records.extend(iter_tfrecord(tmp_path / "cut.tfrecord.gz"))  # the records before the damage come first
    assert 0 < len(records) == int(str(error.value).split("record ")[1].split()[0]) < 303


def test_empty_and_random_files(tmp_path):
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    assert list(iter_tfrecord(tmp_path / "empty.tfrecord")) == []  # as in TF
    with pytest.raises(BertforgeError, match=r"empty\.tfrecord: holds no records \(0 bytes\)"):
        read_pretraining_tfrecords(tmp_path / "empty.tfrecord")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(BertforgeError, match=r"noise\.bin: record 0 \(byte 0\): .*not a TFRecord file"):
        read_pretraining_tfrecords(tmp_path / "noise.bin")
    with pytest.raises(BertforgeError, match="cannot open"):
        read_pretraining_tfrecords(tmp_path / "missing.tfrecord")


def test_missing_or_mistyped_feature(tmp_path):
    examples = [pretraining_example(seed=i) for i in range(4)]
    del examples[2]["masked_lm_ids"]
    write_tfrecord(tmp_path / "a.tfrecord", examples)
    with pytest.raises(BertforgeError, match=r"a\.tfrecord: record 2 \(byte \d+\): has no feature 'masked_lm_ids'"):
        read_pretraining_tfrecords(tmp_path / "a.tfrecord")
    examples = [pretraining_example(seed=i) for i in range(4)]
    examples[1]["masked_lm_weights"] = np.array([1, 1, 0])
    write_tfrecord(tmp_path / "b.tfrecord", examples)
    with pytest.raises(BertforgeError, match="record 1 .*int64_list for feature 'masked_lm_weights' .float_list"):
        read_pretraining_tfrecords(tmp_path / "b.tfrecord")


def test_inconsistent_lengths(tmp_path):
    examples = [pretraining_example(seed=i) for i in range(4)]
    examples[3]["input_mask"] = examples[3]["input_mask"][:-1]
    write_tfrecord(tmp_path / "a.tfrecord", examples)
    with pytest.raises(BertforgeError, match=r"a\.tfrecord: record 3 .*'input_mask' has 7 values, expected 8"):
        read_pretraining_tfrecords(tmp_path / "a.tfrecord")
    write_tfrecord(tmp_path / "b.tfrecord", [pretraining_example(seq=16)])  # another max_seq_length
    with pytest.raises(BertforgeError, match=r"b\.tfrecord: record 0 .*'input_ids' has 16 values, expected 128"):
        read_pretraining_tfrecords([MAIN, tmp_path / "b.tfrecord"])


def test_corrupt_example_inside_valid_frame(tmp_path):
    good = encode_example(pretraining_example())
    write_tfrecord(tmp_path / "a.tfrecord", [good, good[:-5] + b"\xff" * 5])
    with pytest.raises(BertforgeError, match=r"a\.tfrecord: record 1 \(byte \d+\): not a valid tf\.train\.Example"):
        read_pretraining_tfrecords(tmp_path / "a.tfrecord")


def test_gzip_of_garbage(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"not records at all"))
    with pytest.raises(BertforgeError, match=r"a\.gz: record 0 \(byte 0 of the gzip-decompressed data\)"):
        list(iter_tfrecord(tmp_path / "a.gz"))
