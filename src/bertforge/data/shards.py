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
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_write_text, check_output_dir, remove
from bertforge.validation import Rule, check_mapping

FORMAT = "bertforge-pretraining"
VERSION = 1
SHARD_PREFIX = "shard-"
MAX_SEQ_LENGTH = int(np.iinfo(np.uint32).max)  # what the widest length column holds

_COUNT = Rule(int, low=0)
# What the reader relies on in schema.json (converted TFRecords have no masked_lm_prob and may lack a vocab file).
_SCHEMA = {
    "instances": _COUNT,
    "tokens": _COUNT,
    "max_seq_length": Rule(int, low=1, high=MAX_SEQ_LENGTH),
    "max_predictions_per_seq": Rule(int, low=1, high=MAX_SEQ_LENGTH),
    "dynamic_masking": Rule(bool),
    "masking": Rule(dict),
    "vocab": Rule(dict),
    "columns": Rule(dict),
    "shards": Rule(list),
}
_MASKING = {
    "max_predictions_per_seq": Rule(int, low=1),
    "masked_lm_prob": Rule(float, low=0, high=1, low_open=True, high_open=True, optional=True),
    "mask_id": Rule(int, low=0),
    "vocab_size": Rule(int, low=1),
    "whole_word_mask": Rule(bool),
}
_VOCAB = {"size": Rule(int, low=1), "sha256": Rule(str, optional=True), "file": Rule(str, optional=True)}
_SHARD = {"name": Rule(str), "instances": _COUNT, "tokens": _COUNT}


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


def open_shard(directory: Path, schema: dict[str, Any], index: int) -> dict[str, np.ndarray]:
    """Memory-map shard `index`'s columns, checking each file's dtype and shape against the schema and every
    value the reader and the model rely on (lengths, counts, labels, positions, token ids: one vectorised
    pass, so a bad value fails here, naming the shard, and not as an IndexError when training draws it)."""
    shard = schema["shards"][index]
    folder = directory / shard["name"]
    out = {}
    for column, spec in schema["columns"].items():
        path = folder / f"{column}.npy"
        if not path.is_file():
            raise BertforgeError(f"{path}: missing column file (dataset incomplete or damaged)")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises many types for a damaged header
            raise BertforgeError(f"{path}: not a readable .npy file, truncated or damaged ({exc})") from None
        shape = (shard["tokens"],) if spec.get("ragged") else (shard["instances"], *spec.get("shape", ()))
        if array.dtype != np.dtype(spec["dtype"]) or array.shape != shape:
            raise BertforgeError(
                f"{path}: {array.dtype} {array.shape}, but schema.json says {spec['dtype']} {shape} "
                "(truncated or damaged)"
            )
        out[column] = array
    _check_instances(folder, out, schema, shard["tokens"])
    return out


def _check_instances(folder: Path, columns: dict[str, np.ndarray], schema: dict[str, Any], tokens: int) -> None:
    """The per-instance values the reader relies on are in range, the token ids too (vectorised)."""
    lengths = np.asarray(columns["lengths"], dtype=np.int64)
    bad = {
        f"a length above max_seq_length {schema['max_seq_length']}": lengths > schema["max_seq_length"],
        "a segment A longer than the instance": np.asarray(columns["a_lengths"], dtype=np.int64) + 2 > lengths,
        "a next-sentence label other than 0 or 1": np.asarray(columns["next_sentence_labels"]) > 1,
    }
    if "masked_lm_counts" in columns:
        limit = schema["max_predictions_per_seq"]
        bad[f"more than {limit} masked positions"] = np.asarray(columns["masked_lm_counts"]) > limit
        positions = np.asarray(columns["masked_lm_positions"], dtype=np.int64)
        bad["a masked position beyond its length"] = (positions >= lengths[:, None]).any(axis=1)
    for what, found in bad.items():
        if found.any():
            raise BertforgeError(f"{folder}: instance {int(np.argmax(found))} has {what} (damaged shard)")
    total = int(lengths.sum())
    if total != tokens:
        raise BertforgeError(f"{folder}: its lengths add up to {total} tokens, not {tokens} (damaged shard)")
    _check_token_ids(folder, columns, lengths, schema["vocab"]["size"])


def _check_token_ids(folder: Path, columns: dict[str, np.ndarray], lengths: np.ndarray, size: int) -> None:
    """Every token id indexes the vocab: a bad one would stop training with an IndexError whenever it is
    drawn, maybe hours in. A min and a max over each memory-mapped column."""
    for name in ("input_ids", "masked_lm_ids"):
        ids = columns.get(name)
        if ids is None or not ids.size:
            continue
        low = int(ids.min()) if np.issubdtype(ids.dtype, np.signedinteger) else 0
        if low >= 0 and int(ids.max()) < size:
            continue
        flat = np.asarray(ids).reshape(-1)
        where = int(np.flatnonzero((flat < 0) | (flat >= size))[0])
        if name == "masked_lm_ids":
            instance = where // ids.shape[1]
        else:
            instance = int(np.searchsorted(np.cumsum(lengths), where, side="right"))
        raise BertforgeError(
            f"{folder / name}.npy: instance {instance} holds token id {flat[where]}, outside the vocab of {size} "
            "tokens in schema.json (damaged shard, or made with another vocab)"
        )


def read_schema(directory: Path) -> dict[str, Any]:
    """schema.json, checked: every key the reader uses, with its type and range, and columns as the
    parameters imply."""
    path = directory / "schema.json"
    if not path.is_file():
        hint = " (creation was interrupted: rerun with --resume)" if (directory / "params.json").is_file() else ""
        raise BertforgeError(f"{directory}: no schema.json, not a bertforge pretraining dataset{hint}")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertforgeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(schema, dict) or schema.get("format") != FORMAT or schema.get("version") != VERSION:
        found = (schema.get("format"), schema.get("version")) if isinstance(schema, dict) else (None, None)
        raise BertforgeError(f"{path}: format {found[0]} v{found[1]}, expected {FORMAT} v{VERSION}")
    _check_schema(path, schema)
    return schema


def _check_schema(path: Path, schema: dict[str, Any]) -> None:
    where = str(path)
    check_mapping(schema, _SCHEMA, where)
    check_mapping(schema["masking"], _MASKING, where, "masking.")
    check_mapping(schema["vocab"], _VOCAB, where, "vocab.")
    for i, shard in enumerate(schema["shards"]):
        check_mapping(shard, _SHARD, where, f"shards[{i}].")
        if shard["name"] != shard_name(i):
            raise BertforgeError(f"{path}: shards[{i}].name is {shard['name']!r}, expected {shard_name(i)!r}")
    for key in ("instances", "tokens"):
        total = sum(shard[key] for shard in schema["shards"])
        if total != schema[key]:
            raise BertforgeError(f"{path}: {key} is {schema[key]}, but its shards hold {total}")
    size, masking = schema["vocab"]["size"], schema["masking"]
    if schema["dynamic_masking"] and (masking["mask_id"] >= size or masking["vocab_size"] > size):
        # Dynamic masking writes these ids into the instances it reads.
        raise BertforgeError(
            f"{path}: masking.mask_id {masking['mask_id']} and masking.vocab_size {masking['vocab_size']} must "
            f"lie within vocab.size {size}"
        )
    expected = column_specs(
        schema["vocab"]["size"],
        schema["max_seq_length"],
        schema["max_predictions_per_seq"],
        schema["dynamic_masking"],
        schema["masking"]["whole_word_mask"],
    )
    if schema["columns"] != expected:
        raise BertforgeError(f"{path}: columns {schema['columns']} differ from those its settings imply: {expected}")


def clear_dataset(directory: Path) -> None:
    """Remove what a previous run wrote (only our own files) before an --overwrite run."""
    for path in [*directory.glob(f"{SHARD_PREFIX}*"), *directory.glob(f".{SHARD_PREFIX}*.tmp")]:
        remove(path)
    for name in ("schema.json", "params.json"):
        remove(directory / name)


def prepare_output(out: Path, params: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Make `out` ready: continue a run with the same parameters, replace ours on request, never clobber."""
    check_output_dir(out, overwrite)
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
    metas: list[dict[str, Any]],
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
    """Write schema.json from the shards' meta, which makes the dataset readable."""
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
