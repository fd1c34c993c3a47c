"""MindSpore model zoo parameter names <-> Hugging Face full-model names (`bert.` encoder, `cls.` heads).

The model zoo (official/nlp/Bert, `BertNetworkWithLoss` saved as `bert`) names the encoder `bert.bert.*` and
the pretraining heads `bert.cls1.*` (MLM) and `bert.cls2.*` (NSP), LayerNorms `gamma`/`beta`. The `.ckpt`
bytes are read and written by `formats.mindspore_ckpt`; this module only renames.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.modeling.name_tables import name_table, rename

log = logging.getLogger("bertforge")

# (model zoo name after the encoder's prefix, Hugging Face name after `bert.`); {n} is a layer number.
_LAYER = "bert_encoder.layers.{n}."
_HF_LAYER = "encoder.layer.{n}."


def _dense(zoo: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{zoo}.weight", f"{hf}.weight"), (f"{zoo}.bias", f"{hf}.bias")]


def _norm(zoo: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{zoo}.gamma", f"{hf}.weight"), (f"{zoo}.beta", f"{hf}.bias")]


_ZOO_ENCODER = [
    ("bert_embedding_lookup.embedding_table", "embeddings.word_embeddings.weight"),
    ("bert_embedding_postprocessor.token_type_embedding.embedding_table", "embeddings.token_type_embeddings.weight"),
    ("bert_embedding_postprocessor.full_position_embedding.embedding_table", "embeddings.position_embeddings.weight"),
    *_norm("bert_embedding_postprocessor.layernorm", "embeddings.LayerNorm"),
    *(
        pair
        for p in ("query", "key", "value")
        for pair in _dense(f"{_LAYER}attention.attention.{p}_layer", f"{_HF_LAYER}attention.self.{p}")
    ),
    (
        f"{_LAYER}attention.attention._generate_relative_positions_embeddings.embeddings_table",
        f"{_HF_LAYER}attention.self.relative_positions_embeddings.weight",
    ),
    *_dense(f"{_LAYER}attention.output.dense", f"{_HF_LAYER}attention.output.dense"),
    *_norm(f"{_LAYER}attention.output.layernorm", f"{_HF_LAYER}attention.output.LayerNorm"),
    *_dense(f"{_LAYER}intermediate", f"{_HF_LAYER}intermediate.dense"),
    *_dense(f"{_LAYER}output.dense", f"{_HF_LAYER}output.dense"),
    *_norm(f"{_LAYER}output.layernorm", f"{_HF_LAYER}output.LayerNorm"),
    *_dense("dense", "pooler.dense"),
]
# Pretraining heads live beside the encoder: `bert.cls1` (MLM) and `bert.cls2` (NSP) next to `bert.bert`.
_ZOO_HEADS = [
    *_dense("cls1.dense", "cls.predictions.transform.dense"),
    *_norm("cls1.layernorm", "cls.predictions.transform.LayerNorm"),
    ("cls1.output_bias", "cls.predictions.bias"),
    *_dense("cls2.dense", "cls.seq_relationship"),
]
# Training state the model zoo saves beside the weights (optimizer moments, step counters, loss scale).
_ZOO_TRAINING_STATE = re.compile(
    r"^(moments|moment1|moment2|adam_m|adam_v|lamb_m|lamb_v|accu_grads|accumulation|global_step|learning_rate|beta1_power|"
    r"beta2_power|loss_scale|scale_sense|current_iterator_step|last_overflow_iterator_step|epoch_num|step_num)\b"
)


_FROM_ZOO = name_table(_ZOO_ENCODER)
_FROM_ZOO_HEADS = name_table(_ZOO_HEADS)
_TO_ZOO = name_table(_ZOO_ENCODER, reverse=True)
_TO_ZOO_HEADS = name_table(_ZOO_HEADS, reverse=True)


def from_model_zoo_names(tensors: dict[str, np.ndarray], source: str) -> dict[str, torch.Tensor]:
    """Model zoo names -> Hugging Face full-model names. Unmappable encoder names are errors."""
    lookup = [k for k in tensors if k.endswith("bert_embedding_lookup.embedding_table")]
    if len(lookup) != 1:
        raise BertforgeError(
            f"{source}: not a model zoo BERT checkpoint (no single '*bert_embedding_lookup.embedding_table')"
        )
    encoder = lookup[0][: -len("bert_embedding_lookup.embedding_table")]  # e.g. "bert.bert."
    outer = encoder[: encoder.rstrip(".").rfind(".") + 1] if encoder.count(".") > 1 else ""  # e.g. "bert."
    out: dict[str, torch.Tensor] = {}
    unknown, unused, state = [], [], 0
    for name, value in tensors.items():
        if name.startswith(encoder):
            hf = rename(name[len(encoder) :], _FROM_ZOO)
            if hf is None:
                unknown.append(name)
                continue
            out["bert." + hf] = torch.from_numpy(np.ascontiguousarray(value))
        elif name.startswith(outer) and (hf := rename(name[len(outer) :], _FROM_ZOO_HEADS)):
            out[hf] = torch.from_numpy(np.ascontiguousarray(value))
        elif _ZOO_TRAINING_STATE.match(name):
            state += 1
        else:
            unused.append(name)
    if unknown:
        raise BertforgeError(f"{source}: encoder tensors with no known mapping: {', '.join(unknown)}")
    if state:
        log.debug("%s: skipped %d optimizer/training-state entries", source, state)
    if unused:
        log.debug("%s: not used (other heads): %s", source, ", ".join(unused))
    return out


def to_model_zoo_names(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Hugging Face full-model names -> the model zoo's pretraining-network names (`bert.bert.*`, `bert.cls1.*`)."""
    out = {}
    for name, value in state.items():
        zoo = rename(name[len("bert.") :], _TO_ZOO) if name.startswith("bert.") else None
        zoo = "bert.bert." + zoo if zoo else (("bert." + z) if (z := rename(name, _TO_ZOO_HEADS)) else None)
        if zoo is None:
            raise BertforgeError(f"{name} has no MindSpore model zoo equivalent")
        out[zoo] = value.detach().cpu().float().numpy()
    return out
