"""Linear-chain conditional random field for token classification (NER) on top of BERT.

The CRF's sequence is the *masked* positions of each row, in order. NER masks only the first
word-piece of every word and leaves out [CLS], [SEP] and padding, so a mask can have holes and need not
start at position 0. Each row is therefore compacted to a left-aligned sequence (one gather), the CRF runs
there, and decoded tags are scattered back to their original positions.

Parameter names and layout (``transitions[from_tag, to_tag]``) match pytorch-crf, so a state_dict moves
between the two unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

IGNORE_INDEX = -100  # label value of positions outside the mask, as in torch.nn.CrossEntropyLoss
_REDUCTIONS = ("sum", "mean", "none", "token_mean")


def compact_mask(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-align the masked positions of every row.

    mask: (B, S) bool. Returns ``index`` (B, L) long, the original position of the k-th masked token
    (rows shorter than L are padded with distinct unmasked positions, so scattering back never collides);
    ``compact`` (B, L) bool, True for the first ``lengths[b]`` entries; ``lengths`` (B,) long.
    L = max(lengths), which may be 0.
    """
    lengths = mask.sum(dim=1)
    # A stable sort on "is unmasked" puts masked positions first, in their original order.
    index = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    max_len = int(lengths.max()) if mask.numel() else 0
    index = index[:, :max_len]
    steps = torch.arange(max_len, device=mask.device)
    return index, steps < lengths.unsqueeze(1), lengths


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags; batch-first, computes in at least float32."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"CRF needs at least one tag, got num_tags={num_tags}")
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags))  # score of starting in a tag
        self.end_transitions = nn.Parameter(torch.empty(num_tags))  # score of ending in a tag
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [from, to]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-0.1, 0.1), the initialisation pytorch-crf uses."""
        for param in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(param, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def forward(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Log-likelihood of ``tags`` given ``emissions`` (negate it for a loss).

        emissions: (B, S, T) float; tags: (B, S) long, ignored (may be -100) where mask is False;
        mask: (B, S) bool. Returns a scalar (float32 or wider), or (B,) for ``reduction="none"``;
        "mean" averages over rows, "token_mean" over masked tokens. A row with an empty mask scores 0.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self._check(emissions, mask)
        if tags.shape != mask.shape:
            raise ValueError(f"tags shape {tuple(tags.shape)} must equal mask shape {tuple(mask.shape)}")
        mask = mask.bool()
        em, index, compact, lengths = self._compact_emissions(emissions, mask)  # em: (B, L, T)
        tags = tags.gather(1, index).masked_fill(~compact, 0)  # (B, L); filler tag 0 is masked out below

        llh = self._path_score(em, tags, compact, lengths) - self._log_partition(em, compact)
        llh = llh.masked_fill(lengths == 0, 0.0)  # (B,)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi tags. emissions: (B, S, T); mask: (B, S) bool -> (B, S) long, -100 where mask is False."""
        self._check(emissions, mask)
        em, index, compact, lengths = self._compact_emissions(emissions, mask.bool())
        start, end, trans = (p.detach().cpu().numpy() for p in self._scores(em.dtype))
        paths = viterbi(em.detach().cpu().numpy(), lengths.cpu().numpy(), start, end, trans)  # (B, L)
        paths = torch.from_numpy(paths).to(emissions.device)
        out = torch.full(mask.shape, IGNORE_INDEX, dtype=torch.long, device=emissions.device)
        return out.scatter_(1, index, paths.masked_fill(~compact, IGNORE_INDEX))

    def decode_lists(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi tags of the masked positions only, one list per row (pytorch-crf's ``decode`` format)."""
        tags = self.decode(emissions, mask)
        return [row[row_mask].tolist() for row, row_mask in zip(tags, mask.bool())]

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions must be (batch, seq_len, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} must be {tuple(emissions.shape[:2])}")

    def _compact_emissions(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S, T) -> (B, L, T) left-aligned, zero past each row's length, plus ``compact_mask``'s output.

        Half-precision emissions (autocast) are upcast: sums over a whole sentence overflow or lose the
        differences between paths in fp16/bf16, so the CRF computes in at least float32.
        """
        index, compact, lengths = compact_mask(mask)
        dtype = torch.promote_types(emissions.dtype, self.transitions.dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        em = emissions.to(dtype).gather(1, index.unsqueeze(2).expand(-1, -1, emissions.size(2)))
        return em.masked_fill(~compact.unsqueeze(2), 0.0), index, compact, lengths

    def _scores(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """start (T,), end (T,), transitions (T, T) in the compute dtype."""
        return self.start_transitions.to(dtype), self.end_transitions.to(dtype), self.transitions.to(dtype)

    def _path_score(
        self, em: torch.Tensor, tags: torch.Tensor, compact: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalised score of the given tag paths. em: (B, L, T); tags, compact: (B, L) -> (B,)."""
        emitted = (em.gather(2, tags.unsqueeze(2)).squeeze(2) * compact).sum(1)  # (B,)
        if tags.size(1) == 0:
            return emitted
        start, end, trans = self._scores(em.dtype)
        moved = (trans[tags[:, :-1], tags[:, 1:]] * compact[:, 1:]).sum(1)  # (B,)
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # (B,)
        return emitted + moved + start[tags[:, 0]] + end[last]

    def _log_partition(self, em: torch.Tensor, compact: torch.Tensor) -> torch.Tensor:
        """log Z by the forward algorithm. em: (B, L, T); compact: (B, L) -> (B,)."""
        if em.size(1) == 0:
            return em.new_zeros(em.size(0))
        start, end, trans = self._scores(em.dtype)
        alpha = start + em[:, 0]  # (B, T)
        for t in range(1, em.size(1)):
            # (B, T_from, 1) + (T_from, T_to) + (B, 1, T_to), summed out over T_from
            step = torch.logsumexp(alpha.unsqueeze(2) + trans + em[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(compact[:, t : t + 1], step, alpha)  # finished rows keep their alpha
        return torch.logsumexp(alpha + end, dim=1)


def viterbi(
    emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray
) -> np.ndarray:
    """Best tag paths. emissions (B, L, T) left-aligned, row b real for its first lengths[b] steps; start,
    end (T,); transitions[from, to] (T, T) -> (B, L) int64, arbitrary past each row's length.

    In NumPy: the per-step work is a (T, T, B) max, far too small for PyTorch's per-operation overhead
    (several times faster than the same loop in torch on CPU), and prediction on any backend decodes with it. The
    batch is the innermost axis, so the max over the previous tag is an elementwise max of T contiguous
    slabs (twice as fast as reducing along a short inner axis). Only the scores are kept; the backtrace
    recomputes the argmax for the one chosen tag per row, bit for bit the sums the forward pass compared."""
    batch, max_len, num_tags = emissions.shape
    paths = np.zeros((batch, max_len), dtype=np.int64)
    if max_len == 0:
        return paths
    order = np.argsort(-lengths, kind="stable")  # longest first: step t works on the rows still running
    lengths = lengths[order]
    em = np.ascontiguousarray(emissions[order].transpose(1, 2, 0))  # (L, T, B)
    scores = np.zeros((max_len, num_tags, batch), dtype=np.result_type(em, transitions))  # best path to (t, tag)
    scores[0] = start[:, None] + em[0]
    running = np.count_nonzero(lengths[None, :] > np.arange(max_len)[:, None], axis=1)  # rows still running at t
    step = transitions[:, :, None]  # (T_from, T_to, 1)
    for t in range(1, max_len):
        k = int(running[t])
        if k == 0:
            break
        scores[t, :, :k] = (scores[t - 1, :, None, :k] + step).max(axis=0) + em[t, :, :k]
    rows = np.arange(batch)
    tag = (scores[np.maximum(lengths, 1) - 1, :, rows] + end).argmax(axis=1)  # (B,) tag at each row's last step
    for t in range(max_len - 1, -1, -1):
        paths[order, t] = tag
        if t:
            before = (scores[t - 1] + transitions[:, tag]).argmax(axis=0)  # best previous tag for each row's tag
            tag = np.where(t < lengths, before, tag)  # walk back only from the row's last step
    return paths
