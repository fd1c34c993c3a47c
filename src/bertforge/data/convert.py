"""`convert-data`: Google/NVIDIA pretraining TFRecords -> bertforge shards (smaller, memory-mapped)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bertforge.data import shards
from bertforge.data.pretraining_tfrecords import read_pretraining_tfrecords
from bertforge.errors import BertforgeError
from bertforge.tokenization import FullTokenizer

INSTANCES_PER_SHARD = 1 << 20


def convert_tfrecords(
    inputs: list[str | Path], output: str | Path, vocab_file: str | Path | None = None, overwrite: bool = False
) -> dict:
    """Convert TFRecord files (read in the given order) into a dataset directory; returns its schema.

    With `vocab_file` the ids are checked against it and its hash is recorded (so a later mismatch is
    caught); without, the vocab size is taken as the largest id + 1.
    """
    start = time.perf_counter()
    paths = [Path(p) for p in inputs]
    data = read_pretraining_tfrecords(paths)
    n = len(data["input_ids"])
    if n == 0:
        raise BertforgeError(f"{', '.join(map(str, paths))}: no records")
    max_id = int(max(data["input_ids"].max(), data["masked_lm_ids"].max()))
    if vocab_file is not None:
        tokenizer = FullTokenizer(vocab_file)
        if max_id >= len(tokenizer):
            raise BertforgeError(
                f"the records hold id {max_id}, beyond {vocab_file} ({len(tokenizer)} tokens): "
                "they were made with another vocab"
            )
        vocab = shards.vocab_fingerprint(vocab_file) | {"size": len(tokenizer), "path": str(Path(vocab_file).resolve())}
        special = {t: tokenizer.vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]", "[UNK]") if t in tokenizer.vocab}
    else:
        vocab, special = {"sha256": None, "file": None, "size": max_id + 1}, {}
    out = Path(output)
    params = {"inputs": [{"path": str(p), "bytes": p.stat().st_size} for p in paths], "vocab": vocab}
    shards.prepare_output(out, params, resume=False, overwrite=overwrite)

    lengths = data["input_mask"].sum(1)
    # segment B starts at the first segment id 1; A is everything between [CLS] and the first [SEP]
    has_b = data["segment_ids"].any(1)
    a_lengths = np.where(has_b, data["segment_ids"].argmax(1) - 2, lengths - 2)
    counts = (data["masked_lm_weights"] > 0).sum(1)
    L, P = data["input_ids"].shape[1], data["masked_lm_ids"].shape[1]
    specs = shards.column_specs(vocab["size"], L, P, dynamic=False, whole_word=False)
    metas = []
    for index in range(-(-n // INSTANCES_PER_SHARD)):
        rows = slice(index * INSTANCES_PER_SHARD, min(n, (index + 1) * INSTANCES_PER_SHARD))
        mask = data["input_mask"][rows].astype(bool)
        columns = {
            "input_ids": data["input_ids"][rows][mask],  # row-major: instances stay in order
            "lengths": lengths[rows],
            "a_lengths": a_lengths[rows],
            "next_sentence_labels": data["next_sentence_labels"][rows],
            "masked_lm_positions": data["masked_lm_positions"][rows],
            "masked_lm_ids": data["masked_lm_ids"][rows],
            "masked_lm_counts": counts[rows],
        }
        metas.append({"instances": len(columns["lengths"]), "tokens": int(columns["lengths"].sum()), "read": {}})
        shards.write_shard(out, index, shards.as_stored(columns, specs), metas[-1])
    masking = {
        "max_predictions_per_seq": P,
        "masked_lm_prob": None,
        "mask_id": special.get("[MASK]", 103),
        "vocab_size": vocab["size"],
        "whole_word_mask": False,
    }
    schema = shards.write_schema(
        out,
        metas,
        max_seq_length=L,
        max_predictions=P,
        dynamic=False,
        whole_word=False,
        masking=masking,
        vocab=vocab,
        special_ids=special,
        parameters=params,
    )
    schema["seconds"] = time.perf_counter() - start
    return schema
