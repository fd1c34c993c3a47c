"""`BertConfig`: the shape of a BERT/NEZHA model, readable from our files, Hugging Face's and the model zoo's."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.validation import Rule, unknown_key

# Accepted spellings of the two GELUs. "gelu" is the exact (erf) GELU of Google's BERT and Hugging Face;
# "gelu_tanh" is the tanh approximation that the MindSpore model zoo uses (nn.GELU's default).
_ACTIVATION_ALIASES = {
    "gelu": "gelu",
    "gelu_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "tanh": "tanh",
}

# Hugging Face config.json keys that say nothing about the network's shape.
_HF_IGNORED = {
    "model_type",
    "transformers_version",
    "_name_or_path",
    "use_cache",
    "gradient_checkpointing",
    "position_embedding_type",
    "torch_dtype",
    "dtype",
    "label2id",
    "directionality",
    "pooler_fc_size",
    "pooler_num_attention_heads",
    "pooler_num_fc_layers",
    "pooler_size_per_head",
    "pooler_type",
    "output_past",
    "bos_token_id",
    "eos_token_id",
    "problem_type",
    "tie_word_embeddings",
    "is_decoder",
    "add_cross_attention",
    "chunk_size_feed_forward",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "finetuning_task",
    "tokenizer_class",
    "prefix",
    "sep_token_id",
    "task_specific_params",
    "use_relative_position",
}
# Model zoo net_cfg keys that are run settings, not network shape (precision is chosen at training time).
_ZOO_IGNORED = {"seq_length", "dtype", "compute_type", "batch_size"}

_SIZE = Rule(int, low=1)
_PROBABILITY = Rule(float, low=0, high=1, high_open=True)
# What each field must be, checked whenever a config is built (from a file, a preset or code).
_RULES = {
    "vocab_size": _SIZE,
    "hidden_size": _SIZE,
    "num_hidden_layers": _SIZE,
    "num_attention_heads": _SIZE,
    "intermediate_size": _SIZE,
    "hidden_act": Rule(str, choices=tuple(_ACTIVATION_ALIASES)),
    "hidden_dropout_prob": _PROBABILITY,
    "attention_probs_dropout_prob": _PROBABILITY,
    "max_position_embeddings": _SIZE,
    "type_vocab_size": _SIZE,
    "initializer_range": Rule(float, low=0),
    "layer_norm_eps": Rule(float, low=0, low_open=True),
    "pad_token_id": Rule(int, low=0),
    "use_relative_positions": Rule(bool),
    "relative_position_type": Rule(str, choices=("functional", "learned")),
    "max_relative_position": _SIZE,
    "num_labels": _SIZE,
    "id2label": Rule(dict, optional=True),
    "classifier_dropout": dataclasses.replace(_PROBABILITY, optional=True),
    "use_crf": Rule(bool),
    "lstm_hidden_size": Rule(int, low=0),
}


@dataclass
class BertConfig:
    """Hyper-parameters of the encoder and its heads. Field names follow Google's/Hugging Face's configs."""

    vocab_size: int = 21128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072  # feed-forward inner size, usually 4 * hidden_size
    hidden_act: str = "gelu"  # "gelu" (erf) or "gelu_tanh" (MindSpore model zoo)
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # longest input accepted, also for relative positions
    type_vocab_size: int = 2
    initializer_range: float = 0.02  # std of the truncated-normal initialiser
    layer_norm_eps: float = 1e-12  # 1e-7 in the MindSpore model zoo
    pad_token_id: int = 0
    # NEZHA: Shaw-style relative positions instead of absolute position embeddings.
    use_relative_positions: bool = False
    relative_position_type: str = "functional"  # "functional" (fixed sinusoids, shared) or "learned" (per layer)
    max_relative_position: int = 64  # k: distances are clipped to [-k, k]
    # Task heads.
    num_labels: int = 2  # 1 means regression for sequence classification
    id2label: dict[int, str] | None = None
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    use_crf: bool = False  # token classification: CRF on top of the emissions
    lstm_hidden_size: int = 0  # token classification: > 0 puts a BiLSTM of this size per direction before it
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown keys of a foreign config, kept

    def __post_init__(self) -> None:
        for name, rule in _RULES.items():
            setattr(self, name, rule.check(name, getattr(self, name)))
        self.hidden_act = _ACTIVATION_ALIASES[self.hidden_act]
        if self.hidden_size % self.num_attention_heads:
            raise BertforgeError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.pad_token_id >= self.vocab_size:
            raise BertforgeError(f"pad_token_id {self.pad_token_id} is not below vocab_size {self.vocab_size}")
        if self.id2label is not None:
            self.id2label = _label_names(self.id2label)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ----------------------------------------------------------------------------------------------- reading
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BertConfig:
        if name not in PRESETS:
            raise BertforgeError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config", strict: bool = True) -> BertConfig:
        """Build from a mapping. `strict` rejects unknown keys (naming the closest valid one)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        unknown = {k: v for k, v in values.items() if k not in names}
        if strict and unknown:
            raise BertforgeError(f"{source}: {unknown_key(str(next(iter(unknown))), names)}")
        try:
            return cls(**known, extra=unknown)
        except BertforgeError as exc:
            raise BertforgeError(f"{source}: {exc}") from None

    @classmethod
    def from_hf_dict(cls, values: dict[str, Any], *, source: str = "config.json") -> BertConfig:
        """Read a Hugging Face BERT (or NEZHA) config.json; shape-irrelevant HF keys are ignored."""
        pos = values.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise BertforgeError(f"{source}: position_embedding_type {pos!r} is not supported (only 'absolute')")
        ours = {k: v for k, v in values.items() if k not in _HF_IGNORED}
        if values.get("model_type") == "nezha":
            ours.setdefault("use_relative_positions", True)
        elif "use_relative_position" in values:  # the original NEZHA code's name for ours
            ours.setdefault("use_relative_positions", values["use_relative_position"])
        values = ours
        if isinstance(values.get("id2label"), dict):  # Hugging Face stores the label count only through the names
            values.setdefault("num_labels", len(values["id2label"]))
        return cls.from_dict(values, source=source, strict=False)

    @classmethod
    def from_model_zoo_yaml(cls, path: str | Path, network: str | None = None) -> BertConfig:
        """Read the MindSpore model zoo's `pretrain_config.yaml` (`bert_network` + `{base,large,nezha}_net_cfg`).

        The model zoo's LayerNorm epsilon is 1e-7 and its "gelu" is the tanh approximation; its relative
        positions are learned per layer with k = 16.
        """
        data = _read_mapping(Path(path))
        network = network or data.get("bert_network", "base")
        section = data.get(f"{network}_net_cfg")
        if not isinstance(section, dict):
            found = [k for k in data if str(k).endswith("_net_cfg")]
            raise BertforgeError(f"{path}: no '{network}_net_cfg' section (found: {found or 'none'})")
        values = {k: v for k, v in section.items() if k not in _ZOO_IGNORED}
        values.setdefault("layer_norm_eps", 1e-7)
        if values.get("hidden_act", "gelu") == "gelu":
            values["hidden_act"] = "gelu_tanh"
        if values.get("use_relative_positions"):
            values.setdefault("relative_position_type", "learned")
            values.setdefault("max_relative_position", 16)
        return cls.from_dict(values, source=f"{path} [{network}_net_cfg]")

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        """Read a config: our JSON/YAML, a Hugging Face config.json, or the model zoo's YAML."""
        path = Path(path)
        data = _read_mapping(path)
        if any(str(k).endswith("_net_cfg") for k in data):
            return cls.from_model_zoo_yaml(path)
        # Hugging Face's config.json, and Google's and Huawei's (NEZHA-PyTorch) bert_config.json with their spellings.
        if "model_type" in data or "architectures" in data or path.name == "bert_config.json":
            return cls.from_hf_dict(data, source=str(path))
        return cls.from_dict(data, source=str(path))

    @classmethod
    def resolve(cls, config: BertConfig | str | Path) -> BertConfig:
        """Accept a config object, a preset name or a file path."""
        if isinstance(config, BertConfig):
            return config
        if isinstance(config, str) and config in PRESETS:
            return cls.from_preset(config)
        return cls.from_file(config)

    # ----------------------------------------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("extra")
        return values

    def to_hf_dict(self) -> dict[str, Any]:
        """config.json in Hugging Face's layout, so `transformers` reads our checkpoints (plus our own keys)."""
        values = self.extra | self.to_dict()
        values["hidden_act"] = "gelu_pytorch_tanh" if self.hidden_act == "gelu_tanh" else self.hidden_act
        values["model_type"] = "nezha" if self.use_relative_positions else "bert"
        values["position_embedding_type"] = "absolute"
        if self.use_relative_positions:
            values["use_relative_position"] = True
        if self.id2label is None:
            del values["id2label"]
        else:
            values["label2id"] = {v: k for k, v in self.id2label.items()}
        return values

    def save(self, path: str | Path) -> None:
        """Write as YAML (.yaml/.yml) or JSON, atomically."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write_text(path, text)


def check_field(name: str, value: Any, key: str | None = None) -> Any:
    """`value` as BertConfig stores field `name`; errors call it `key` (default: `name`). Checks the field
    alone: how fields fit together is checked when the config is built."""
    if name not in _RULES:
        raise BertforgeError(unknown_key(key or name, _RULES))
    return _RULES[name].check(key or name, value)


def _label_names(id2label: dict) -> dict[int, str]:
    """id2label with integer ids (JSON keys are strings) and string names."""
    out = {}
    for key, name in id2label.items():
        number = int(key) if isinstance(key, str) and key.isdecimal() else key
        if isinstance(number, bool) or not isinstance(number, int) or number < 0 or isinstance(name, (dict, list)):
            raise BertforgeError(f"id2label must map label ids (0, 1, ...) to names, got {key!r}: {name!r}")
        out[number] = str(name)
    return out


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 numbers: `1e-7` is a float (PyYAML's YAML 1.1 reads it as a string)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BertforgeError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BertforgeError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, _YamlLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BertforgeError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise BertforgeError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


PRESETS: dict[str, BertConfig] = {
    # The MindSpore model zoo's base_net_cfg (Chinese vocab) and large_net_cfg (English vocab).
    "bert-base": BertConfig(),
    "bert-large": BertConfig(
        vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    # Huawei's NEZHA: functional (sinusoid) relative positions, k = 64.
    "nezha-base": BertConfig(use_relative_positions=True),
    "nezha-large": BertConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        use_relative_positions=True,
    ),
    # For tests and the quickstart.
    "tiny": BertConfig(
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    ),
}
