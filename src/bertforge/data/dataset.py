"""`PretrainingDataset`: random access to pretraining instances in bertforge shards or Google TFRecords.

Every item is a dict of numpy arrays named as in Google's TFRecords, padded to max_seq_length /
max_predictions_per_seq: input_ids, input_mask, segment_ids (max_seq_length,), masked_lm_positions,
masked_lm_ids, masked_lm_weights (max_predictions,), next_sentence_labels (). With dynamic masking the
masks are drawn when an item is read, from a stream seeded by (seed, epoch, index): reproducible, and new
every epoch after `set_epoch`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from bertforge.data import shards
from bertforge.data.masking import MaskingConfig, mask_instances
from bertforge.data.pretraining_tfrecords import PRETRAINING_FEATURES, read_pretraining_tfrecords
from bertforge.errors import BertforgeError
from bertforge.formats.tfrecord import read_batches

FEATURES = PRETRAINING_FEATURES  # Google's seven TFRecord feature names, in its order


class PretrainingDataset:
    """`PretrainingDataset(path)`: a bertforge dataset directory, or TFRecord file(s) written by Google's script."""

    def __init__(self, path: str | Path | list[str | Path], seed: int = 0):
        paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        self.seed = seed
        self.epoch = 0
        if len(paths) == 1 and paths[0].is_dir():
            self._open_shards(paths[0])
        else:
            self._open_tfrecords(paths)
        if len(self) == 0:
            raise BertforgeError(f"{', '.join(map(str, paths))}: the dataset holds no instances")

    # ------------------------------------------------------------------------------------------ opening
    def _open_shards(self, directory: Path) -> None:
        schema = shards.read_schema(directory)
        self.schema = schema
        self.max_seq_length = schema["max_seq_length"]
        self.max_predictions = schema["max_predictions_per_seq"]
        self.dynamic = schema["dynamic_masking"]
        self.masking = MaskingConfig(**{f.name: schema["masking"][f.name] for f in dataclasses.fields(MaskingConfig)})
        self._shards = [
            shards.open_shard(directory, schema, i) for i, s in enumerate(schema["shards"]) if s["instances"]
        ]
        counts = [len(s["lengths"]) for s in self._shards]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for shard in self._shards:  # per-shard instance offsets into the flat token column
            shard["offsets"] = np.concatenate([[0], np.cumsum(shard["lengths"], dtype=np.int64)])
        self.vocab = schema["vocab"]
        self._dense = None

    def _open_tfrecords(self, paths: list[Path]) -> None:
        for p in paths:
            if not p.is_file():
                raise BertforgeError(f"{p}: neither a bertforge dataset directory (no schema.json) nor a TFRecord file")
        self._dense = read_pretraining_tfrecords(paths)
        self._tfrecords = paths
        self.schema = None
        self.max_seq_length = self._dense["input_ids"].shape[1]
        self.max_predictions = self._dense["masked_lm_ids"].shape[1]
        self.dynamic = False
        self.vocab = None
        self._starts = np.array([0, len(self._dense["input_ids"])], dtype=np.int64)

    # ------------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        """Choose the masks of dynamic-masking datasets for this epoch."""
        self.epoch = epoch

    def check_vocab(self, vocab_size: int, vocab_file: str | Path | None = None) -> None:
        """Fail clearly when the data was made with another vocab than the model/tokenizer about to use it:
        by the vocab recorded with our datasets, by the token ids themselves in TFRecords."""
        if self._dense is not None:
            for name in ("input_ids", "masked_lm_ids"):
                ids = self._dense[name]
                bad = np.argwhere((ids < 0) | (ids >= vocab_size))
                if len(bad):
                    row, column = bad[0]
                    raise BertforgeError(
                        f"{self._record(int(row))}: {name} holds token id {ids[row, column]}, outside the model's "
                        f"vocab_size {vocab_size}: the records were made with another vocab"
                    )
            return
        if vocab_file is not None and self.vocab["sha256"] is not None:
            mine = shards.vocab_fingerprint(vocab_file)["sha256"]
            if mine != self.vocab["sha256"]:
                raise BertforgeError(
                    f"the dataset was created with a different vocab ({self.vocab['file']}, sha256 "
                    f"{self.vocab['sha256'][:12]}…) than {vocab_file} (sha256 {mine[:12]}…)"
                )
        if self.vocab["size"] > vocab_size:
            raise BertforgeError(
                f"the dataset's vocab has {self.vocab['size']} tokens but the model's vocab_size is "
                f"{vocab_size}: ids would be out of range; set vocab_size >= {self.vocab['size']}"
            )

    def _record(self, index: int) -> str:
        """'FILE record N' for the index-th TFRecord read (the files are counted again: for errors only)."""
        for path in self._tfrecords:
            count = sum(len(batch.starts) for batch in read_batches(path))
            if index < count:
                return f"{path} record {index}"
            index -= count
        raise IndexError(index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} instances")
        index %= n
        if self._dense is not None:  # the same dtypes as from shards
            return {
                k: self._dense[k][index].astype(np.float32 if k == "masked_lm_weights" else np.int64) for k in FEATURES
            }
        s = int(np.searchsorted(self._starts, index, side="right")) - 1
        shard, i = self._shards[s], index - int(self._starts[s])
        begin, end = int(shard["offsets"][i]), int(shard["offsets"][i + 1])
        ids = np.asarray(shard["input_ids"][begin:end])
        length, a_len = end - begin, int(shard["a_lengths"][i])
        L, P = self.max_seq_length, self.max_predictions
        if self.dynamic:
            word_starts = np.asarray(shard["word_starts"][begin:end]) if "word_starts" in shard else None
            rng = np.random.default_rng([self.seed, self.epoch, index])
            masked = mask_instances(ids, np.array([0, length]), np.array([a_len]), self.masking, rng, word_starts)
            ids, positions, labels, count = masked.ids, masked.positions[0], masked.labels[0], int(masked.counts[0])
        else:
            positions, labels = shard["masked_lm_positions"][i], shard["masked_lm_ids"][i]
            count = int(shard["masked_lm_counts"][i])
        item = {
            "input_ids": np.zeros(L, dtype=np.int64),
            "input_mask": np.zeros(L, dtype=np.int64),
            "segment_ids": np.zeros(L, dtype=np.int64),
            "masked_lm_positions": np.asarray(positions, dtype=np.int64),
            "masked_lm_ids": np.asarray(labels, dtype=np.int64),
            "masked_lm_weights": (np.arange(P) < count).astype(np.float32),
            "next_sentence_labels": np.int64(shard["next_sentence_labels"][i]),
        }
        item["input_ids"][:length] = ids
        item["input_mask"][:length] = 1
        item["segment_ids"][a_len + 2 : length] = 1
        return item
