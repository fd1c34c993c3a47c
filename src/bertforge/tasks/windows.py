"""Overlapping windows over a long token sequence, and which window each token is best read in.

NER and QA both cut text longer than the model's window into windows every `stride` tokens. A token that
falls in several windows is labelled (training) and predicted (inference) only in the one where it has the
most context on its shorter side — Google's `_check_is_max_context` — so every token counts exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def windows(n: int, width: int, stride: int, truncate: bool = False) -> list[tuple[int, int]]:
    """(start, end) token ranges covering [0, n) with windows of `width` every `stride` tokens, the last one
    ending at n (a full window, not a short tail); one window cut at `width` when truncating."""
    if n <= width or truncate:
        return [(0, min(n, width))]
    starts = list(range(0, n - width, stride)) + [n - width]
    return [(s, s + width) for s in starts]


def best_windows(positions: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each token position, the index of the window where it has the most context on its shorter side
    (ties: the earlier window; a longer window wins by 0.01 per token, as in Google's score); -1 when no
    window holds it (truncation). For windows of one width with increasing starts, each window owns one
    contiguous run of positions."""
    pos = np.asarray(positions, dtype=np.int64)[:, None]
    starts = np.asarray([s for s, _ in spans])[None, :]
    ends = np.asarray([e for _, e in spans])[None, :]
    inside = (pos >= starts) & (pos < ends)
    context = np.where(inside, np.minimum(pos - starts, ends - 1 - pos) + 0.01 * (ends - starts), -np.inf)
    best = context.argmax(axis=1) if len(spans) else np.zeros(len(pos), dtype=np.int64)
    return np.where(inside.any(axis=1), best, -1).tolist()
