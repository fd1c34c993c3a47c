"""Multi-head self-attention: SDPA for absolute-position BERT, Shaw-style relative positions for NEZHA.

NEZHA's relative form, with R[i, j] = table[clip(j - i, -k, k) + k] of shape (S, S, d) shared by all heads:
    scores[i, j]  = (q_i . k_j + q_i . R[i, j]) / sqrt(d)
    context_i     = sum_j p[i, j] * (v_j + R[i, j])
R is never materialised: q . table^T is (S, 2k+1) and is gathered into (S, S); on the value side the
probabilities are summed per distance bucket and multiplied by the table.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertforge.modeling.config import BertConfig
from bertforge.modeling.dropout import dropout as dropout_fn


def sinusoid_relative_table(max_relative_position: int, depth: int) -> torch.Tensor:
    """Huawei NEZHA's fixed table, (2k+1, depth): row r holds sin/cos of r / 10000^(2i/depth) interleaved.

    Rows are indexed by the shifted distance r = clip(j - i, -k, k) + k, exactly as in Huawei's code
    (the sinusoid's argument is the shifted index, not the signed distance).
    """
    rows = np.arange(2 * max_relative_position + 1, dtype=np.float64)[:, None]  # (R, 1)
    freq = np.power(10000.0, 2 * np.arange(depth // 2, dtype=np.float64) / depth)[None, :]  # (1, depth/2)
    table = np.zeros((rows.shape[0], depth), dtype=np.float64)
    table[:, 0 : 2 * (depth // 2) : 2] = np.sin(rows / freq)
    table[:, 1 : 2 * (depth // 2) : 2] = np.cos(rows / freq)
    return torch.from_numpy(table).float()


def relative_position_index(
    length: int, max_relative_position: int, device: torch.device | None = None
) -> torch.Tensor:
    """(S, S) long tensor: [i, j] = clip(j - i, -k, k) + k, the table row used between query i and key j."""
    pos = torch.arange(length, device=device)
    distance = pos[None, :] - pos[:, None]  # [i, j] = j - i
    return distance.clamp(-max_relative_position, max_relative_position) + max_relative_position


class BertSelfAttention(nn.Module):
    """Projects to heads and mixes values; names follow Hugging Face (`attention.self.{query,key,value}`)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_prob = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.relative = config.use_relative_positions
        self.max_relative_position = config.max_relative_position
        if self.relative and config.relative_position_type == "learned":
            # The model zoo's NEZHA: one trained (2k+1, head_dim) table per layer.
            self.relative_positions_embeddings = nn.Embedding(2 * config.max_relative_position + 1, self.head_dim)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, relative_table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden (B, S, H), additive mask (B, 1, 1, S) -> context (B, S, H).

        `relative_table` (2k+1, head_dim) is the shared functional table; learned tables live in this module.
        """
        B, S, H = hidden.shape
        q, k, v = (
            proj(hidden).view(B, S, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, S, hd)
            for proj in (self.query, self.key, self.value)
        )
        dropout = self.dropout_prob if self.training else 0.0
        if self.relative:
            table = self.relative_positions_embeddings.weight if relative_table is None else relative_table
            context = self._explicit_attention(q, k, v, mask, dropout, table.to(q.dtype))
        elif dropout > 0 and q.device.type == "cpu":
            # SDPA's CPU path with dropout is this same computation, but with the slower Bernoulli sampling.
            context = self._explicit_attention(q, k, v, mask, dropout)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return context.transpose(1, 2).reshape(B, S, H)

    def _explicit_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor,
        dropout: float,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + mask) v, with NEZHA's relative terms on both sides when `table` is given."""
        B, nh, S, hd = q.shape
        scores = q @ k.transpose(-1, -2)  # (B, nh, S, S)
        if table is not None:
            index = relative_position_index(S, self.max_relative_position, q.device).expand(B, nh, S, S)
            scores = scores + torch.gather(q @ table.T, -1, index)  # q_i . R[i, j]
        probs = torch.softmax(scores / math.sqrt(hd) + mask, dim=-1)
        probs = dropout_fn(probs, dropout, dropout > 0)
        context = probs @ v  # (B, nh, S, hd)
        if table is not None:
            buckets = torch.zeros(B, nh, S, table.shape[0], dtype=probs.dtype, device=probs.device)
            buckets.scatter_add_(-1, index, probs)  # sum of p[i, j] over the j at each distance
            context = context + buckets @ table
        return context
