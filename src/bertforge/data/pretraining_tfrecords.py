"""Read Google-format BERT pretraining TFRecords (``create_pretraining_data.py`` output) without TensorFlow:
every record a ``tf.train.Example`` holding the seven features below, all records padded to the same lengths.

Speed matters (a shard holds ~100k records of ~1.3 KB): records come a few MiB at a time (`read_batches`),
the per-record Python work is only walking the few fields of each Example (`scan_example`), and the packed
lists of a whole batch are decoded at once with numpy. Checked against files written and parsed by
TensorFlow itself (``scripts/make_tfrecord_fixtures.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.formats.example_proto import FLOAT, INT64, KIND_NAMES, decode_int64s, gather_bytes, scan_example
from bertforge.formats.protowire import WireError
from bertforge.formats.tfrecord import PathLike, RecordBatch, read_batches

# The seven features Google's create_pretraining_data.py writes.
SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")  # max_seq_length values each
PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")  # max_predictions_per_seq
PRETRAINING_FEATURES = (*SEQUENCE_FEATURES, *PREDICTION_FEATURES, "next_sentence_labels")
_FLOAT_FEATURES = {"masked_lm_weights"}


def read_pretraining_tfrecords(paths: PathLike | Iterable[PathLike]) -> dict[str, np.ndarray]:
    """Load the seven features of every record of Google-format pretraining TFRecords, in file order:
    input_ids, input_mask, segment_ids (N, max_seq_length); masked_lm_positions, masked_lm_ids,
    masked_lm_weights (N, max_predictions_per_seq); next_sentence_labels (N,). Integer features are
    int32, masked_lm_weights float32. Other features are ignored.

    Every record of every file must have all seven with the lengths of the first record. Raises
    BertforgeError naming the file and the record otherwise, or for a corrupt, truncated or empty file.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise BertforgeError("no TFRecord files given")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PRETRAINING_FEATURES}
    shape: dict[str, int] = {}  # feature -> values per record, fixed by the first record read
    for path in paths:
        count = 0
        for batch in read_batches(path):
            for name, values in _decode_pretraining_batch(Path(path), batch, shape).items():
                parts[name].append(values)
            count += len(batch.starts)
        if count == 0:
            size = os.path.getsize(path)
            raise BertforgeError(
                f"{path}: holds no records ({size} bytes), expected pretraining TFRecords "
                "(create_pretraining_data.py output)"
            )
    return {name: np.concatenate(values) for name, values in parts.items()}


def _decode_pretraining_batch(path: Path, batch: RecordBatch, shape: dict[str, int]) -> dict[str, np.ndarray]:
    """Decode the seven features of a batch into (n, length) arrays, checking every record's lengths."""
    data = batch.data
    # per feature: its byte ranges in data (flat start, end, ...) and the record of each range
    wanted = [
        (name, name.encode(), FLOAT if name in _FLOAT_FEATURES else INT64, [], []) for name in PRETRAINING_FEATURES
    ]
    for i, (start, length) in enumerate(zip(batch.starts.tolist(), batch.lengths.tolist())):
        try:
            features = scan_example(data, start, start + length)
        except WireError as exc:
            raise BertforgeError(
                f"{path}: {batch.where(i, exc.offset)}: not a valid tf.train.Example: {exc.detail}"
            ) from None
        for name, key, feature_type, spans, records in wanted:
            found = features.get(key)
            if found is None or found[0] != feature_type:
                _missing_feature(path, batch, i, name, feature_type, features)
            spans += found[1]
            if len(found[1]) == 2:  # one packed run: the usual case
                records.append(i)
            else:
                records += [i] * (len(found[1]) // 2)
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(batch.starts)
    result = {}
    for name, _, feature_type, flat, records in wanted:
        spans = np.array(flat, dtype=np.int64).reshape(-1, 2)
        if feature_type == FLOAT:
            values = gather_bytes(buf, spans).view("<f4").astype(np.float32)
            per_span = (spans[:, 1] - spans[:, 0]) // 4
        else:
            try:
                values, per_span = decode_int64s(buf, spans)
            except WireError as exc:
                i = int(np.searchsorted(batch.starts, exc.offset, side="right")) - 1
                raise BertforgeError(f"{path}: {batch.where(i, exc.offset)}: feature {name!r}: {exc.detail}") from None
        counts = np.bincount(np.array(records, dtype=np.int64), weights=per_span, minlength=n).astype(np.int64)
        _check_lengths(path, batch, name, counts, shape)
        if name not in _FLOAT_FEATURES:
            values = _to_int32(path, batch, name, values, shape[name])
        result[name] = values.reshape(n, shape[name]) if name != "next_sentence_labels" else values
    return result


def _missing_feature(
    path: Path, batch: RecordBatch, i: int, name: str, feature_type: int, features: dict[bytes, tuple[int, list[int]]]
) -> None:
    found = features.get(name.encode())
    have = ", ".join(sorted(n.decode("utf-8", "replace") for n in features)) or "none"
    problem = "has no" if found is None else f"has {KIND_NAMES[found[0]]} for"
    raise BertforgeError(
        f"{path}: {batch.where(i)}: {problem} feature {name!r} ({KIND_NAMES[feature_type]} expected); "
        f"a pretraining record needs {', '.join(PRETRAINING_FEATURES)} (it has: {have})"
    )


def _check_lengths(path: Path, batch: RecordBatch, name: str, counts: np.ndarray, shape: dict[str, int]) -> None:
    """Every record must hold as many values as the first record did; the group's features agree too."""
    group = SEQUENCE_FEATURES if name in SEQUENCE_FEATURES else PREDICTION_FEATURES
    if name == "next_sentence_labels":
        shape.setdefault(name, 1)
        reference = "one label"
    elif name == group[0]:
        shape.setdefault(name, int(counts[0]))
        reference = f"{shape[name]} values (as in the first record read)"
    else:
        shape.setdefault(name, shape[group[0]])
        reference = f"{shape[name]} values (as {group[0]!r} has)"
    bad = np.flatnonzero(counts != shape[name])
    if bad.size:
        i = int(bad[0])
        raise BertforgeError(
            f"{path}: {batch.where(i)}: feature {name!r} has {counts[i]} values, expected {reference}; "
            "every record must be padded to the same max_seq_length / max_predictions_per_seq"
        )


def _to_int32(path: Path, batch: RecordBatch, name: str, values: np.ndarray, width: int) -> np.ndarray:
    out = values.astype(np.int32)
    bad = np.flatnonzero(out != values)
    if bad.size:
        i = int(bad[0]) // width
        raise BertforgeError(
            f"{path}: {batch.where(i)}: feature {name!r} holds {values[bad[0]]}, outside the int32 range "
            "(corrupt record?)"
        )
    return out
