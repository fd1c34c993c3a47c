"""The BERT/NEZHA encoder: embeddings -> post-LayerNorm transformer layers -> pooler.

Module and parameter names follow Hugging Face's `modeling_bert.py`, so the checkpoints users already have
load unchanged and ours load in `transformers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.errors import BertforgeError
from bertforge.modeling.attention import BertSelfAttention, sinusoid_relative_table
from bertforge.modeling.checkpoint import PretrainedMixin
from bertforge.modeling.config import BertConfig
from bertforge.modeling.dropout import Dropout

_ACTIVATIONS = {
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "relu": nn.ReLU(),
    "tanh": nn.Tanh(),
}


def activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor  # (B, S, H)
    pooler_output: torch.Tensor | None  # (B, H); None without a pooler


class BertEmbeddings(nn.Module):
    """Word + token-type (+ absolute position, unless NEZHA) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if not config.use_relative_positions:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        # Set by heads whose tied decoder always adds a dense gradient to the word embeddings: the lookup's
        # own gradient is then produced sparse and added into it, instead of a zero-filled (V, H) tensor
        # plus a (V, H) sum: two passes over the largest tensor of the model, at every step.
        self.sparse_word_gradient = False

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """input_ids, token_type_ids (B, S) -> (B, S, H)."""
        words = self.word_embeddings
        x = F.embedding(input_ids, words.weight, words.padding_idx, sparse=self.sparse_word_gradient)
        x = x + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "position_embeddings"):
            x = x + self.position_embeddings.weight[: input_ids.shape[1]]  # broadcast over the batch
        return self.dropout(self.LayerNorm(x))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidual(config, config.hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, relative_table: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden, mask, relative_table), hidden)


class BertResidual(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): the post-LN sub-layer ending (HF `*.output`)."""

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidual(config, config.intermediate_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, relative_table: torch.Tensor | None) -> torch.Tensor:
        """(B, S, H) -> (B, S, H)."""
        attended = self.attention(hidden, mask, relative_table)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        if config.use_relative_positions and config.relative_position_type == "functional":
            # Huawei NEZHA: one fixed table shared by all layers; derived, so not saved in checkpoints.
            table = sinusoid_relative_table(config.max_relative_position, config.head_dim)
            self.register_buffer("relative_table", table, persistent=False)
        else:
            self.relative_table = None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, mask, self.relative_table)
        return hidden


class BertPooler(nn.Module):
    """tanh(dense(first token)): the [CLS] summary used by NSP and sentence classification."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(PretrainedMixin, nn.Module):
    """The encoder. `forward(input_ids, token_type_ids=None, attention_mask=None) -> BertOutput`."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda module: init_weights(module, config))

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> BertOutput:
        """input_ids (B, S) long; token_type_ids (B, S) (default 0); attention_mask (B, S), 1 = real token."""
        if input_ids.dim() != 2:
            raise BertforgeError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        if S > self.config.max_position_embeddings:
            raise BertforgeError(
                f"sequence length {S} exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.embeddings(input_ids, token_type_ids)  # (B, S, H)
        hidden = self.encoder(hidden, extended_attention_mask(attention_mask, hidden.dtype, B, S, hidden.device))
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return BertOutput(last_hidden_state=hidden, pooler_output=pooled)


def extended_attention_mask(
    attention_mask: torch.Tensor | None, dtype: torch.dtype, batch: int, length: int, device: torch.device
) -> torch.Tensor:
    """(B, S) 1/0 mask -> additive (B, 1, 1, S): 0 where attended, the dtype's minimum where padded.

    A finite minimum (not -inf) keeps a fully padded row finite instead of NaN.
    """
    if attention_mask is None:
        return torch.zeros(batch, 1, 1, length, dtype=dtype, device=device)
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


@torch.no_grad()
def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """N(0, std²) cut at ±2 std, as TF's truncated_normal, by redrawing the values outside (about 4.6%).

    Same distribution as `nn.init.trunc_normal_`, but much faster: its inverse-CDF method costs several
    transcendental functions per value, which every `from_pretrained` paid before overwriting the weights.
    """
    if tensor.is_meta:  # built without storage, for weights a checkpoint supplies (from_pretrained)
        return tensor
    tensor.normal_(0.0, std)
    while True:
        outside = tensor.abs() > 2 * std
        count = int(outside.sum())
        if count == 0:
            return tensor
        tensor[outside] = torch.randn(count, dtype=tensor.dtype, device=tensor.device) * std


def init_weights(module: nn.Module, config: BertConfig) -> None:
    """BERT's initialisation: truncated normal (±2 std) weights, zero biases, LayerNorm 1/0."""
    std = config.initializer_range
    if isinstance(module, (nn.Linear, nn.Embedding)):
        truncated_normal_(module.weight, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
