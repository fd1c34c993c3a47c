"""The on-disk format of pretraining instances: a directory of shards of memory-mapped `.npy` columns.

    DIR/schema.json            columns, dtypes, counts per shard, creation parameters, vocab hash
    DIR/params.json            the creation parameters (written first; `--resume` checks them)
    DIR/shard-00000/*.npy      one file per column; ragged token columns are flat with an `offsets` column
    DIR/shard-00000/meta.json  this shard's counts and read report

Instances are stored unpadded (`input_ids` flat + `lengths`); each column in the smallest dtype that holds
every value the limits allow (token ids: the vocab; lengths and positions: max_seq_length; counts:
max_predictions_per_seq), and a value that would not survive the cast is an error, never a wrapped number.
The reader pads instances to max_seq_length. A shard directory appears only when complete (atomic rename).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_write_text

FORMAT = "bertforge-pretraining"
VERSION = 1
SHARD_PREFIX = "shard-"


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def column_specs(
    vocab_size: int, max_seq_length: int, max_predictions: int, dynamic: bool, whole_word: bool
) -> dict[str, dict[str, Any]]:
    """The stored columns: dtype, and `ragged` (flat, split by `lengths`) or a fixed `shape` per instance."""
    ids = id_dtype(vocab_size).name
    length = _unsigned(max_seq_length, np.uint16).name
    columns: dict[str, dict[str, Any]] = {
        "input_ids": {"dtype": ids, "ragged": True},
        "lengths": {"dtype": length},
        "a_lengths": {"dtype": length},
        "next_sentence_labels": {"dtype": "uint8"},
    }
    if not dynamic:
        columns |= {
            "masked_lm_positions": {"dtype": length, "shape": [max_predictions]},
            "masked_lm_ids": {"dtype": ids, "shape": [max_predictions]},
            "masked_lm_counts": {"dtype": _unsigned(max_predictions, np.uint8).name},
        }
    elif whole_word:
        columns["word_starts"] = {"dtype": "bool", "ragged": True}
    return columns


def _unsigned(limit: int, smallest: type) -> np.dtype:
    """The smallest unsigned dtype, `smallest` or wider, that holds 0..limit."""
    return np.promote_types(smallest, np.min_scalar_type(limit))


def as_stored(columns: dict[str, np.ndarray], specs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """The columns cast to their stored dtypes, every value checked to have survived the cast."""
    out = {}
    for name, values in columns.items():
        stored = values.astype(specs[name]["dtype"], copy=False)
        if not np.array_equal(stored, values):
            bad = values.reshape(-1)[np.flatnonzero(stored.reshape(-1) != values.reshape(-1))[0]]
            raise BertforgeError(f"column {name}: value {bad} does not fit its stored dtype {stored.dtype}")
        out[name] = stored
    return out


def vocab_fingerprint(vocab_file: str | Path) -> dict[str, Any]:
    data = Path(vocab_file).read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "file": Path(vocab_file).name}


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def write_shard(directory: Path, index: int, columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write one shard's columns into a temporary directory, then rename it into place (replacing a stale
    shard from an overwritten run)."""
    with atomic_dir(directory / shard_name(index)) as tmp:
        for name, array in columns.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def read_shard_meta(directory: Path, index: int) -> dict[str, Any] | None:
    path = directory / shard_name(index) / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def open_shard(directory: Path, name: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Memory-map a shard's columns (nothing is read until used)."""
    out = {}
    for column in columns:
        path = directory / name / f"{column}.npy"
        if not path.is_file():
            raise BertforgeError(f"{path}: missing column file (dataset incomplete or damaged)")
        out[column] = np.load(path, mmap_mode="r", allow_pickle=False)
    return out


def read_schema(directory: Path) -> dict[str, Any]:
    path = directory / "schema.json"
    if not path.is_file():
        hint = " (creation was interrupted: rerun with --resume)" if (directory / "params.json").is_file() else ""
        raise BertforgeError(f"{directory}: no schema.json, not a bertforge pretraining dataset{hint}")
    schema = json.loads(path.read_text())
    if schema.get("format") != FORMAT or schema.get("version") != VERSION:
        raise BertforgeError(
            f"{path}: format {schema.get('format')} v{schema.get('version')}, expected {FORMAT} v{VERSION}"
        )
    return schema


def clear_dataset(directory: Path) -> None:
    """Remove what a previous run wrote (only our own files) before an --overwrite run."""
    for path in directory.glob(f"{SHARD_PREFIX}*"):
        shutil.rmtree(path)
    for path in directory.glob(f".{SHARD_PREFIX}*.tmp"):
        shutil.rmtree(path)
    for name in ("schema.json", "params.json"):
        (directory / name).unlink(missing_ok=True)


def prepare_output(out: Path, params: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Make `out` ready: continue a run with the same parameters, replace ours on request, never clobber."""
    params_file = out / "params.json"
    if resume and params_file.is_file():
        before = json.loads(params_file.read_text())
        now = json.loads(json.dumps(params))
        if before != now:
            changed = [k for k in now if before.get(k) != now[k]]
            raise BertforgeError(
                f"{out}: --resume with different {', '.join(changed)} than the interrupted run; "
                "use the same inputs and options, or --overwrite to start again"
            )
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BertforgeError(f"{out} is not empty; pass --resume to continue an interrupted run or --overwrite")
        clear_dataset(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(params_file, json.dumps(params, indent=1) + "\n")


def write_schema(
    directory: Path,
    num_shards: int,
    *,
    max_seq_length: int,
    max_predictions: int,
    dynamic: bool,
    whole_word: bool,
    masking: dict[str, Any],
    vocab: dict[str, Any],
    special_ids: dict[str, int],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Write schema.json from the shards' meta files, which makes the dataset readable."""
    metas = [read_shard_meta(directory, i) for i in range(num_shards)]
    schema = {
        "format": FORMAT,
        "version": VERSION,
        "instances": sum(m["instances"] for m in metas),
        "tokens": sum(m["tokens"] for m in metas),
        "max_seq_length": max_seq_length,
        "max_predictions_per_seq": max_predictions,
        "dynamic_masking": dynamic,
        "masking": masking,
        "vocab": vocab,
        "special_ids": special_ids,
        "columns": column_specs(vocab["size"], max_seq_length, max_predictions, dynamic, whole_word),
        "shards": [{"name": shard_name(i)} | m for i, m in enumerate(metas)],
        "parameters": parameters,
    }
    atomic_write_text(directory / "schema.json", json.dumps(schema, indent=1) + "\n")
    return schema
