"""`bertforge inspect`: pretraining records printed for a person, and the statistics of a dataset."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bertforge.data.dataset import PretrainingDataset


def statistics(items: Iterable[dict[str, np.ndarray]], max_seq_length: int, mask_id: int) -> dict:
    """Counts and fractions over instances (dicts of Google's seven features)."""
    lengths, masked, nsp, mask_tok, kept, replaced = [], [], [], 0, 0, 0
    for item in items:
        n = int(item["input_mask"].sum())
        k = int(item["masked_lm_weights"].sum())
        pos, orig = item["masked_lm_positions"][:k], item["masked_lm_ids"][:k]
        now = item["input_ids"][pos]
        mask_tok += int((now == mask_id).sum())
        kept += int(((now != mask_id) & (now == orig)).sum())
        replaced += int(((now != mask_id) & (now != orig)).sum())
        lengths.append(n)
        masked.append(k)
        nsp.append(int(item["next_sentence_labels"]))
    lengths_arr, masked_arr = np.asarray(lengths), np.asarray(masked)
    total = max(1, int(masked_arr.sum()))
    edges = np.linspace(0, max_seq_length, 9).astype(int)
    hist = np.histogram(lengths_arr, bins=edges)[0] if len(lengths_arr) else np.zeros(8, dtype=int)
    return {
        "instances": len(lengths),
        "tokens": int(lengths_arr.sum()),
        "mean_tokens": float(lengths_arr.mean()) if lengths else 0.0,
        "padding_fraction": 1 - float(lengths_arr.sum()) / max(1, len(lengths) * max_seq_length),
        "short_fraction": float((lengths_arr < max_seq_length // 2).mean()) if lengths else 0.0,
        "masked_per_instance": float(masked_arr.mean()) if lengths else 0.0,
        "masked_token_fraction": float(masked_arr.sum()) / max(1, int(lengths_arr.sum())),
        "nsp_random_fraction": float(np.mean(nsp)) if nsp else 0.0,
        "mask_split": {"mask": mask_tok / total, "kept": kept / total, "random": replaced / total},
        "length_histogram": {f"{edges[i]}-{edges[i + 1] - (i < 7)}": int(c) for i, c in enumerate(hist)},
    }


def dataset_statistics(dataset: PretrainingDataset, limit: int | None = None) -> dict:
    n = len(dataset) if limit is None else min(limit, len(dataset))
    mask_id = dataset.masking.mask_id if dataset.schema else 103
    return statistics((dataset[i] for i in range(n)), dataset.max_seq_length, mask_id)


def format_record(item: dict[str, np.ndarray], id_to_token) -> str:
    """One instance as text: masked tokens shown as `[MASK→original]` (or `word→original` when the token was
    kept or randomised), a `|` between segments A and B, and the NSP label."""
    n = int(item["input_mask"].sum())
    tokens = id_to_token(item["input_ids"][:n].tolist())
    k = int(item["masked_lm_weights"].sum())
    originals = dict(zip(item["masked_lm_positions"][:k].tolist(), id_to_token(item["masked_lm_ids"][:k].tolist())))
    words = [f"{t}→{originals[i]}" if i in originals else t for i, t in enumerate(tokens)]
    boundary = int(np.argmax(item["segment_ids"][:n])) if item["segment_ids"][:n].any() else n
    text = " ".join(words[:boundary]) + " | " + " ".join(words[boundary:])
    label = "random next (1)" if int(item["next_sentence_labels"]) else "actual next (0)"
    return f"{text}\n  NSP: {label}; {k} masked of {n} tokens"
