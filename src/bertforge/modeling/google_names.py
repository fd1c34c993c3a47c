"""Google BERT / Huawei NEZHA TensorFlow variable names <-> Hugging Face full-model names.

Google's `modeling.py` names the encoder `bert/embeddings/…`, `bert/encoder/layer_N/…`, `bert/pooler/…`
(dense layers `kernel` (in, out), i.e. transposed against torch's (out, in), LayerNorms `gamma`/`beta`);
`run_pretraining.py` adds `cls/predictions/…` and `cls/seq_relationship/…`, `run_classifier.py` a bare
`output_weights`/`output_bias` and `run_squad.py` `cls/squad/…` — those three heads store (out, in)
matrices used with `transpose_b=True`, so they are not transposed. Huawei's NEZHA keeps Google's names and
drops the absolute position table (its relative positions are fixed sinusoids, computed, not stored).
The bundle's bytes are read and written by `formats.tf_checkpoint`; this module only renames.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.modeling.config import BertConfig
from bertforge.modeling.name_tables import name_table, rename

log = logging.getLogger("bertforge")

_LAYER, _HF_LAYER = "bert/encoder/layer_{n}/", "bert.encoder.layer.{n}."


def _dense(tf: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{tf}/kernel", f"{hf}.weight"), (f"{tf}/bias", f"{hf}.bias")]


def _norm(tf: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{tf}/gamma", f"{hf}.weight"), (f"{tf}/beta", f"{hf}.bias")]


_NAMES = [
    ("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight"),
    ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight"),
    ("bert/embeddings/position_embeddings", "bert.embeddings.position_embeddings.weight"),
    *_norm("bert/embeddings/LayerNorm", "bert.embeddings.LayerNorm"),
    *(
        pair
        for p in ("query", "key", "value")
        for pair in _dense(f"{_LAYER}attention/self/{p}", f"{_HF_LAYER}attention.self.{p}")
    ),
    *_dense(f"{_LAYER}attention/output/dense", f"{_HF_LAYER}attention.output.dense"),
    *_norm(f"{_LAYER}attention/output/LayerNorm", f"{_HF_LAYER}attention.output.LayerNorm"),
    *_dense(f"{_LAYER}intermediate/dense", f"{_HF_LAYER}intermediate.dense"),
    *_dense(f"{_LAYER}output/dense", f"{_HF_LAYER}output.dense"),
    *_norm(f"{_LAYER}output/LayerNorm", f"{_HF_LAYER}output.LayerNorm"),
    *_dense("bert/pooler/dense", "bert.pooler.dense"),
    # run_pretraining.py
    *_dense("cls/predictions/transform/dense", "cls.predictions.transform.dense"),
    *_norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm"),
    ("cls/predictions/output_bias", "cls.predictions.bias"),
    ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight"),
    ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias"),
    # run_classifier.py and run_squad.py
    ("output_weights", "classifier.weight"),
    ("output_bias", "classifier.bias"),
    ("cls/squad/output_weights", "qa_outputs.weight"),
    ("cls/squad/output_bias", "qa_outputs.bias"),
]
# Training state saved beside the weights: Google's AdamWeightDecayOptimizer slots, tf.train optimizers'
# slots and counters, and the loss scale of mixed-precision runs.
_TRAINING_STATE = re.compile(
    r"(/(adam_m|adam_v|Adam|Adam_1|Momentum|lamb_m|lamb_v|LAMB|LAMB_1|ExponentialMovingAverage)$)|"
    r"^(global_step|beta1_power|beta2_power|learning_rate|loss_scale|good_steps|current_loss_scale)(/|$)"
)


_FROM_TF = name_table(_NAMES)
_TO_TF = name_table(_NAMES, reverse=True)


def transposed(tf_name: str) -> bool:
    """Whether a tensor is stored (in, out), torch's (out, in) transposed."""
    return tf_name.endswith("/kernel")


def google_renames(names: Iterable[str], source: str) -> dict[str, str]:
    """Google TF name -> Hugging Face full-model name, for every variable that maps, decided from the names
    alone. Optimizer slots and step counters are skipped and reported; an unmappable `bert/` name is an error
    (another architecture, e.g. ALBERT), other unknown names are reported and left out."""
    names = list(names)
    if "bert/embeddings/word_embeddings" not in names:
        scopes = sorted({name.split("/")[0] for name in names})
        raise BertforgeError(
            f"{source}: not a Google BERT/NEZHA checkpoint (no 'bert/embeddings/word_embeddings'; its variables "
            f"are under {', '.join(scopes[:8]) or 'nothing'}{' …' if len(scopes) > 8 else ''})"
        )
    renamed: dict[str, str] = {}
    unknown, unused, state = [], [], []
    for name in names:
        if _TRAINING_STATE.search(name):
            state.append(name)
        elif (hf := rename(name, _FROM_TF)) is not None:
            renamed[name] = hf
        else:
            (unknown if name.startswith("bert/") else unused).append(name)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise BertforgeError(f"{source}: encoder variables with no known BERT/NEZHA mapping: {shown}")
    if state:
        kinds = sorted({name.rsplit("/", 1)[-1] for name in state})
        log.info("%s: skipped %d optimizer/training-state variables (%s)", source, len(state), ", ".join(kinds))
    if unused:
        log.info("%s: not used (unknown heads): %s", source, ", ".join(unused))
    return renamed


def from_google_names(tensors: Mapping[str, np.ndarray], source: str) -> dict[str, torch.Tensor]:
    """Google TF names -> Hugging Face full-model names (`google_renames`), reading only the tensors that map
    (`tensors` may read lazily); kernels transposed to torch's layout."""
    out: dict[str, torch.Tensor] = {}
    for name, hf in google_renames(tensors, source).items():
        value = torch.from_numpy(np.ascontiguousarray(tensors[name]))
        out[hf] = value.t().contiguous() if transposed(name) else value
    return out


def to_google_names(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Hugging Face full-model names -> Google TF names (kernels transposed back), as float32."""
    out = {}
    for name, value in state.items():
        tf = rename(name, _TO_TF)
        if tf is None:
            raise BertforgeError(f"{name} has no equivalent in Google's TensorFlow BERT")
        array = value.detach().cpu().float()
        out[tf] = (array.t() if transposed(tf) else array).contiguous().numpy()
    return out


def google_config(config: BertConfig) -> dict[str, object]:
    """`bert_config.json` with the keys Google's `modeling.BertConfig` (and Huawei's NEZHA, for relative
    positions) reads. Google's code knows one GELU, "gelu", which it computes with the tanh approximation;
    bertforge and transformers read "gelu" as the exact one. A LayerNorm epsilon other than Google's
    1e-12 is kept as `layer_norm_eps` (Google's code ignores it; bertforge reads it back)."""
    if config.relative_position_type != "functional" and config.use_relative_positions:
        raise BertforgeError(
            "learned relative position tables (the MindSpore model zoo's NEZHA) have no place in Huawei's "
            "TensorFlow NEZHA, whose relative positions are fixed sinusoids"
        )
    out: dict[str, object] = {
        key: getattr(config, key)
        for key in (
            "attention_probs_dropout_prob",
            "hidden_dropout_prob",
            "hidden_size",
            "initializer_range",
            "intermediate_size",
            "max_position_embeddings",
            "num_attention_heads",
            "num_hidden_layers",
            "type_vocab_size",
            "vocab_size",
        )
    }
    out["hidden_act"] = "gelu" if config.hidden_act == "gelu_tanh" else config.hidden_act
    if config.hidden_act == "gelu_tanh":
        log.warning(
            "bert_config.json: hidden_act 'gelu' for this model's tanh GELU, which is what Google's modeling.py "
            "computes; bertforge and transformers read 'gelu' back as the exact GELU"
        )
    if config.layer_norm_eps != 1e-12:
        out["layer_norm_eps"] = config.layer_norm_eps
    if config.use_relative_positions:
        out["use_relative_position"] = True
        out["max_relative_position"] = config.max_relative_position
    if config.num_labels != 2 or config.id2label:  # read back by bertforge; Google's code takes labels as flags
        out["num_labels"] = config.num_labels
    if config.id2label:
        out["id2label"] = {str(k): v for k, v in config.id2label.items()}
    return dict(sorted(out.items()))
