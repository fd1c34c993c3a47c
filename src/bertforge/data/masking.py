"""Masked-LM predictions for many instances at once (Google's `create_masked_lm_predictions`, vectorised).

Per instance: every position except [CLS] and the two [SEP]s is a candidate (with whole-word masking, a
candidate is a whole word: a word-start token and the continuation tokens after it); candidates are taken
in random order until num_to_predict = min(max_predictions, max(1, round(len * masked_lm_prob))) tokens
are chosen (a whole word that would overshoot is skipped, as in Google's whole-word code). Each chosen
token becomes [MASK] 80% of the time, stays 10%, and becomes a uniformly random vocabulary id 10%.

Instances are ragged: `ids` is the flat concatenation, `offsets` (N+1) delimits them, and `a_lengths` (N)
is the length of segment A, so the [SEP]s sit at a_len + 1 and len - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskingConfig:
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    mask_id: int = 103
    vocab_size: int = 30522
    whole_word_mask: bool = False


@dataclass
class MaskedBatch:
    ids: np.ndarray  # flat input ids with the masks applied, like `ids`
    positions: np.ndarray  # (N, P) sorted masked positions, 0-padded
    labels: np.ndarray  # (N, P) original ids at those positions, 0-padded
    counts: np.ndarray  # (N,) number of real predictions per instance


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """concat(arange(n) for n in lengths), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.arange(lengths.sum(), dtype=np.int64) - np.repeat(starts, lengths)


def candidate_mask(offsets: np.ndarray, a_lengths: np.ndarray) -> np.ndarray:
    """Flat bool: True where a token may be masked (not [CLS] and not either [SEP])."""
    n = offsets[-1]
    ok = np.ones(n, dtype=bool)
    starts = offsets[:-1]
    ok[starts] = False  # [CLS]
    ok[starts + a_lengths + 1] = False  # first [SEP]
    ok[offsets[1:] - 1] = False  # last [SEP]
    return ok


def mask_instances(
    ids: np.ndarray,
    offsets: np.ndarray,
    a_lengths: np.ndarray,
    config: MaskingConfig,
    rng: np.random.Generator,
    word_starts: np.ndarray | None = None,
) -> MaskedBatch:
    """Choose and apply the masks of every instance. `word_starts` (flat bool) is needed for whole words."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    N, P = len(lengths), config.max_predictions_per_seq
    a_lengths = np.asarray(a_lengths, dtype=np.int64)
    # Python's round() and np.rint both round half to even.
    wanted = np.minimum(P, np.maximum(1, np.rint(lengths * config.masked_lm_prob).astype(np.int64)))
    if config.whole_word_mask:
        if word_starts is None:
            raise ValueError("whole-word masking needs word_starts")
        chosen = _choose_whole_words(offsets, candidate_mask(offsets, a_lengths), word_starts, wanted, rng)
    else:
        chosen = _choose_tokens(offsets, a_lengths, wanted, rng)
    # chosen: flat positions (global index into ids), grouped by instance, each group ascending.
    owner = np.searchsorted(offsets, chosen, side="right") - 1
    counts = np.bincount(owner, minlength=N)
    slot = ragged_arange(counts)
    positions = np.zeros((N, P), dtype=np.int64)
    labels = np.zeros((N, P), dtype=ids.dtype)
    positions[owner, slot] = chosen - offsets[owner]
    labels[owner, slot] = ids[chosen]
    out = ids.copy()
    r = rng.random(len(chosen))
    keep = rng.random(len(chosen)) < 0.5
    random_ids = rng.integers(0, config.vocab_size, len(chosen))
    out[chosen] = np.where(r < 0.8, config.mask_id, np.where(keep, ids[chosen], random_ids))
    return MaskedBatch(out, positions, labels, counts)


def _choose_tokens(offsets: np.ndarray, a_lengths: np.ndarray, wanted: np.ndarray, rng) -> np.ndarray:
    """Random `wanted[i]` candidate tokens of each instance, as sorted flat positions.

    Taking the k smallest of i.i.d. uniform priorities is the same draw as shuffling the candidates and
    taking the first k; an (N, max_len) matrix keeps it to a few whole-array operations.
    """
    lengths = np.diff(offsets)
    N, L = len(lengths), int(lengths.max(initial=0))
    rows = np.arange(N)
    priority = rng.random((N, L))
    priority[np.arange(L)[None, :] >= lengths[:, None]] = 2.0  # padding sorts last
    priority[:, 0] = priority[rows, a_lengths + 1] = priority[rows, lengths - 1] = 2.0  # [CLS], [SEP]s
    k = min(int(wanted.max(initial=0)), L)
    top = np.argpartition(priority, k - 1, axis=1)[:, :k] if k < L else np.tile(np.arange(L), (N, 1))
    order = np.argsort(np.take_along_axis(priority, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)  # the k best columns, best first
    take = (np.arange(k)[None, :] < wanted[:, None]) & (np.take_along_axis(priority, top, axis=1) < 2.0)
    chosen = np.where(take, top, L)  # L marks "not chosen" and sorts after every real column
    chosen.sort(axis=1)
    r, c = np.nonzero(chosen < L)
    return offsets[r] + chosen[r, c]


def _choose_whole_words(offsets, candidates, word_starts, wanted, rng) -> np.ndarray:
    """Whole words in random order per instance; a word that would exceed `wanted` is skipped."""
    flat = np.nonzero(candidates)[0]
    # A candidate opens a word if it is a word start or follows a non-candidate ([CLS]/[SEP]).
    opens = word_starts[flat] | ~np.concatenate([[False], candidates[flat[1:] - 1] & (flat[1:] - 1 == flat[:-1])])
    word_of = np.cumsum(opens) - 1  # word id per candidate token
    word_first = flat[opens]
    word_size = np.bincount(word_of)
    word_owner = np.searchsorted(offsets, word_first, side="right") - 1
    order = np.lexsort((rng.random(len(word_first)), word_owner))  # shuffled words, grouped by instance
    bounds = np.searchsorted(word_owner[order], np.arange(len(wanted) + 1))
    picked = []
    for i in range(len(wanted)):
        total, limit = 0, int(wanted[i])
        for w in order[bounds[i] : bounds[i + 1]]:
            if total >= limit:
                break
            size = int(word_size[w])
            if total + size > limit:
                continue
            picked.append(w)
            total += size
    picked = np.sort(np.asarray(picked, dtype=np.int64))
    return np.sort(word_first[picked].repeat(word_size[picked]) + ragged_arange(word_size[picked]))
