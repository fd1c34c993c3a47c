"""Write the TFRecord fixtures in tests/fixtures/tfrecord/ with Google's own pretraining-data script and TF.

TensorFlow is not a bertforge dependency, so run this in a throwaway venv outside the repo:

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu absl-py
    /tmp/tfvenv/bin/python scripts/make_tfrecord_fixtures.py   # from the repo root; --out DIR to write elsewhere

What it does, and why:
1. turns the first documents of the `lee-background` sample (English news, one document per line) into
   the input Google's script wants (one sentence per line, blank lines between documents) and runs the
   unmodified ``create_pretraining_data.py`` of bert-tensorflow 1.0.4 (sample `google-bert`) under real
   TensorFlow, with the `vocab-en` uncased vocabulary: ``google_en.tfrecord`` is genuine Google output.
   The script is TF1 code; it runs with ``tensorflow.compat.v1`` installed as ``tensorflow``.
   TF's protobuf writes an Example's map entries in an order that changes from run to run (and the
   gzip header changes too), so rerunning rewrites the files with the same records but other bytes;
   the .npz expectations stay identical.
2. reads that file back with ``tf.data.TFRecordDataset`` + ``tf.io.parse_single_example`` and stores
   the seven feature arrays, as TF returns them, in ``google_en.npz``: the tests' expected values.
3. rewrites the same records with TF's writer GZIP- and ZLIB-compressed (``google_en.tfrecord.gz``,
   ``google_en_zlib.tfrecord``; NVIDIA's and others' pipelines compress), checking TF reads them back equal;
4. writes ``google_en_extra.tfrecord``: the first records again, each with unknown extra features
   (bytes, floats, negative int64s) and one record hand-encoded with unpacked repeated fields and the
   map entries in reverse order (valid protobuf that TF's writer never produces); what TF parses from
   it is stored in ``google_en_extra.npz``. It exits non-zero if any check fails.
Last run: TensorFlow 2.21.0 (protobuf 7.36.2), Python 3.11.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
# bertforge from the source tree, uninstalled: bertforge.samples imports no torch, which this venv need not have.
sys.path.insert(0, str(ROOT / "src"))
from bertforge import samples  # noqa: E402

DOCUMENTS = 100  # of lee-background's 300: a few hundred instances, under 300 KB
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS = 20
EXTRA_RECORDS = 12
HAND_ENCODED = 3  # index in google_en_extra.tfrecord of the record with unpacked fields

FEATURES = {
    "input_ids": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "input_mask": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([MAX_SEQ_LENGTH], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([MAX_PREDICTIONS], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}
EXTRA_FEATURES = {
    "extra_bytes": tf.io.VarLenFeature(tf.string),
    "extra_floats": tf.io.VarLenFeature(tf.float32),
    "extra_int64": tf.io.VarLenFeature(tf.int64),
}

# Runs Google's script unmodified: its `import tensorflow as tf` gets the TF1 API, and its
# `from bert import tokenization` finds the package the script sits in.
RUNNER = """
import runpy, sys
import tensorflow.compat.v1 as tf
sys.modules["tensorflow"] = tf
script = sys.argv[1]
sys.path.insert(0, script.rsplit("/", 2)[0])
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def sentences_per_line(corpus: Path, documents: int) -> str:
    """lee_background.cor has one news story per line; Google's script wants one sentence per line."""
    out = []
    for line in corpus.read_text(encoding="utf-8").splitlines()[:documents]:
        out.extend(s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", line.strip()) if s)
        out.append("")
    return "\n".join(out) + "\n"


def parse_with_tf(path: Path, features: dict, compression: str = "") -> dict[str, np.ndarray]:
    """Every record of `path` parsed by TF itself, stacked per feature; a VarLenFeature as its values
    concatenated plus `<name>_row_lengths` (and bytes values as uint8 plus `<name>_value_lengths`)."""
    rows: dict[str, list] = {name: [] for name in features}
    for record in tf.data.TFRecordDataset(str(path), compression_type=compression):
        parsed = tf.io.parse_single_example(record, features)
        for name in features:
            value = parsed[name]
            rows[name].append((value.values if isinstance(value, tf.SparseTensor) else value).numpy())
    out = {}
    for name, values in rows.items():
        if isinstance(features[name], tf.io.VarLenFeature):
            flat = np.concatenate(values)
            out[f"{name}_row_lengths"] = np.array([len(v) for v in values], dtype=np.int64)
            if flat.dtype == object:  # bytes values: npz cannot hold objects without pickle
                out[f"{name}_value_lengths"] = np.array([len(v) for v in flat], dtype=np.int64)
                flat = np.frombuffer(b"".join(flat), dtype=np.uint8)
            out[name] = flat
        else:
            out[name] = np.stack(values)
    return out


def write_with_tf(path: Path, records: list[bytes], compression: str = "") -> None:
    with tf.io.TFRecordWriter(str(path), options=compression or None) as writer:
        for record in records:
            writer.write(record)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _ld(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def hand_encoded_unpacked(example: tf.train.Example) -> bytes:
    """`example` serialized with every int64/float value as its own (unpacked) field, entries reversed."""
    entries = []
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "int64_list":
            body = _ld(3, b"".join(b"\x08" + _varint(v) for v in feature.int64_list.value))
        elif kind == "float_list":
            body = _ld(2, b"".join(b"\x0d" + np.float32(v).tobytes() for v in feature.float_list.value))
        else:
            body = _ld(1, b"".join(_ld(1, v) for v in feature.bytes_list.value))
        entries.append(_ld(1, _ld(1, name.encode()) + _ld(2, body)))
    entries.reverse()  # the opposite of the order TF's writer chose
    return _ld(1, b"".join(entries))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/tfrecord")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bert_dir = samples.fetch("google-bert")
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "lee_sentences.txt"
        text.write_text(sentences_per_line(samples.fetch("lee-background"), DOCUMENTS), encoding="utf-8")
        raw = Path(tmp) / "google_en.tfrecord"
        subprocess.run(
            [
                sys.executable,
                "-c",
                RUNNER,
                str(bert_dir / "create_pretraining_data.py"),
                f"--input_file={text}",
                f"--output_file={raw}",
                f"--vocab_file={samples.fetch('vocab-en')}",
                "--do_lower_case=True",
                f"--max_seq_length={MAX_SEQ_LENGTH}",
                f"--max_predictions_per_seq={MAX_PREDICTIONS}",
                "--masked_lm_prob=0.15",
                "--random_seed=12345",
                "--dupe_factor=1",
            ],
            check=True,
        )
        shutil.copyfile(raw, out / "google_en.tfrecord")
    main_file = out / "google_en.tfrecord"
    expected = parse_with_tf(main_file, FEATURES)
    np.savez_compressed(out / "google_en.npz", **expected)
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(main_file))]

    failures = []
    for name, compression in [("google_en.tfrecord.gz", "GZIP"), ("google_en_zlib.tfrecord", "ZLIB")]:
        write_with_tf(out / name, records, compression)
        again = parse_with_tf(out / name, FEATURES, compression)
        if any(not np.array_equal(again[k], expected[k]) for k in expected):
            failures.append(f"{name}: TF reads back different values")

    extra_records = []
    for i, record in enumerate(records[:EXTRA_RECORDS]):
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        feature["extra_bytes"].bytes_list.value.extend([f"record {i}".encode(), b"\x00\xff", b""])
        feature["extra_floats"].float_list.value.extend([0.5 * i, -1e30, float("inf")][: 1 + i % 3])
        feature["extra_int64"].int64_list.value.extend([-1, -(2**63), 2**63 - 1, i][: 1 + i % 4])
        extra_records.append(hand_encoded_unpacked(example) if i == HAND_ENCODED else example.SerializeToString())
    write_with_tf(out / "google_en_extra.tfrecord", extra_records)
    extra = parse_with_tf(out / "google_en_extra.tfrecord", {**FEATURES, **EXTRA_FEATURES})
    if any(not np.array_equal(extra[k], expected[k][:EXTRA_RECORDS]) for k in expected):
        failures.append("google_en_extra.tfrecord: TF parses the pretraining features differently")
    np.savez_compressed(out / "google_en_extra.npz", **extra)

    for path in sorted(out.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
    print(f"{len(records)} instances; TensorFlow {tf.__version__}")
    for failure in failures:
        print("FAIL", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
