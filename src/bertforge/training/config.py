"""Pretraining run configuration: typed defaults < YAML file < command-line overrides (OmegaConf merges).

The sections mirror the MindSpore model zoo's `pretrain_config.yaml`: the network (`model`, any
`BertConfig` field plus a `preset`), the run (`train`), the optimizer with its learning-rate schedule and
clipping (`optimizer`), fp16 loss scaling (`loss_scale`) and data loading (`data`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.modeling.config import BertConfig, check_field
from bertforge.validation import Rule, unknown_key


@dataclass
class TrainConfig:
    train_steps: int = -1  # optimizer steps; -1: run `epochs` epochs
    epochs: int = 40
    batch_size: int = 32  # per device and micro-step
    accumulation_steps: int = 1  # micro-steps per optimizer step
    save_checkpoint_steps: int = 10000
    save_checkpoint_num: int = 1  # newest checkpoints kept
    init_checkpoint: str | None = None  # anything from_pretrained reads
    seed: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (mixed precision on CUDA)
    device: str = "auto"  # auto | cpu | cuda
    log_steps: int = 10  # metrics every N optimizer steps
    eval_steps: int = 0  # > 0: also evaluate every N steps (jobs that evaluate do so at every epoch's end)


@dataclass
class OptimizerConfig:
    name: str = "lamb"  # lamb | adamw | momentum
    learning_rate: float = 3e-5
    end_learning_rate: float = 0.0
    warmup_steps: int = 10000
    warmup_proportion: float = 0.0  # > 0: warm up for this fraction of the run instead of warmup_steps
    decay_steps: int = -1  # -1: the run's total steps
    power: float = 1.0
    decay_from_zero: bool = False  # the model zoo counts decay from step 0 (a jump after warm-up)
    weight_decay: float = 0.01
    eps: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.999
    bias_correction: bool = True  # false: the model zoo's AdamWeightDecay
    momentum: float = 0.9
    clip_norm: float = 1.0  # <= 0 disables clipping
    clip_mode: str = "global"  # global | per_tensor (the model zoo's ClipByNorm)


@dataclass
class LossScaleConfig:
    init_scale: float = 65536.0
    scale_factor: float = 2.0
    scale_window: int = 1000
    max_consecutive_overflows: int = 50


@dataclass
class DataConfig:
    path: str | None = None  # dataset directory or TFRecord files (set by --data)
    num_workers: int = 2  # DataLoader processes
    seed: int = 0  # dynamic-masking stream


@dataclass
class PretrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "bert-base"})
    train: TrainConfig = field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss_scale: LossScaleConfig = field(default_factory=LossScaleConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def bert_config(self) -> BertConfig:
        values = dict(self.model)
        preset = values.pop("preset", None)
        base = BertConfig.from_preset(preset).to_dict() if preset else {}
        return BertConfig.from_dict(base | values, source="config [model]")


_COUNT = Rule(int, low=1)
_STEPS = Rule(int, low=1, also=(-1,))  # -1: as many as the run has
_FRACTION = Rule(float, low=0, high=1, high_open=True)
# Ranges and choices of the run settings (OmegaConf checks their types); the model section is BertConfig's.
_RULES = {
    "train.train_steps": _STEPS,
    "train.epochs": _COUNT,
    "train.batch_size": _COUNT,
    "train.accumulation_steps": _COUNT,
    "train.save_checkpoint_steps": _COUNT,
    "train.save_checkpoint_num": _COUNT,
    "train.seed": Rule(int, low=0),
    "train.precision": Rule(str, choices=("fp32", "bf16", "fp16")),
    "train.device": Rule(str, choices=("auto", "cpu", "cuda")),
    "train.log_steps": _COUNT,
    "train.eval_steps": Rule(int, low=0),
    "optimizer.name": Rule(str, choices=("lamb", "adamw", "momentum")),
    "optimizer.learning_rate": Rule(float, low=0),
    "optimizer.end_learning_rate": Rule(float, low=0),
    "optimizer.warmup_steps": Rule(int, low=0),
    "optimizer.warmup_proportion": Rule(float, low=0, high=1),
    "optimizer.decay_steps": _STEPS,
    "optimizer.power": Rule(float, low=0),
    "optimizer.weight_decay": Rule(float, low=0),
    "optimizer.eps": Rule(float, low=0, low_open=True),
    "optimizer.beta1": _FRACTION,
    "optimizer.beta2": _FRACTION,
    "optimizer.momentum": _FRACTION,
    "optimizer.clip_norm": Rule(float),
    "optimizer.clip_mode": Rule(str, choices=("global", "per_tensor")),
    "loss_scale.init_scale": Rule(float, low=0, low_open=True),
    "loss_scale.scale_factor": Rule(float, low=1, low_open=True),
    "loss_scale.scale_window": _COUNT,
    "loss_scale.max_consecutive_overflows": _COUNT,
    "data.num_workers": Rule(int, low=0),
    "data.seed": Rule(int, low=0),
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, schema_class: type = None):
    """Defaults, then the YAML file, then `key.sub=value` overrides. Errors name where the value came from
    (the file or the command line), the key, and what was expected; an unknown key gets a suggestion.

    `schema_class` is the dataclass of the job's config (default: `PretrainConfig`). A field of it whose metadata
    has `build` is merged as a raw mapping, then built by `build(config, raw, where)`, `where(key)` naming the
    source of each dotted key."""
    schema = OmegaConf.structured(schema_class or PretrainConfig)
    if path is not None and not Path(path).is_file():
        raise BertforgeError(f"config file {path} does not exist")
    layers = [(str(path), lambda: OmegaConf.load(path))] if path is not None else []
    layers.append(("command line", lambda: OmegaConf.from_dotlist(overrides or [])))
    merged, origin = schema, {}
    for where, load in layers:
        try:
            layer = load()
            merged = OmegaConf.merge(merged, layer)
        except (ConfigKeyError, ConfigAttributeError) as exc:
            key = getattr(exc, "full_key", None) or str(exc)
            raise BertforgeError(f"{where}: {unknown_key(key, _keys_beside(schema, key))}") from None
        except ValidationError as exc:
            raise BertforgeError(f"{where}: {exc.msg.splitlines()[0]} (key {exc.full_key})") from None
        except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BertforgeError(f"{where}: {exc}") from None
        origin |= dict.fromkeys(_leaf_keys(OmegaConf.to_container(layer)), where)
    config = OmegaConf.to_object(merged)

    def where(key: str) -> str:
        return origin.get(key, "defaults")

    for f in dataclasses.fields(config):
        if "build" in f.metadata:  # a section typed by its own declarations (e.g. a task's settings)
            setattr(config, f.name, f.metadata["build"](config, getattr(config, f.name), where))
    _check(config, where)
    return config


def _check(config, where) -> None:
    """Every setting in its range, and the model section a valid BertConfig; `where(key)` names the source."""
    for key, rule in _RULES.items():
        section, name = key.split(".")
        if hasattr(config, section):
            try:
                rule.check(key, getattr(getattr(config, section), name))
            except BertforgeError as exc:
                raise BertforgeError(f"{where(key)}: {exc}") from None
    if isinstance(config, PretrainConfig):
        for name, value in config.model.items():
            if name != "preset":
                try:
                    check_field(name, value, key=f"model.{name}")
                except BertforgeError as exc:
                    raise BertforgeError(f"{where(f'model.{name}')}: {exc}") from None
        config.bert_config()  # how the fields fit together


def _keys_beside(schema: DictConfig, key: str) -> list[str]:
    """The valid keys of the section that `key` (dotted) would be in."""
    parent = key.rpartition(".")[0]
    node = OmegaConf.select(schema, parent) if parent else schema
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the values in a nested mapping."""
    if not isinstance(node, dict):
        return [prefix.rstrip(".")]
    return [key for k, v in node.items() for key in _leaf_keys(v, f"{prefix}{k}.")]


# What a resumed run may change: none of it alters what the run computes.
RESUMABLE = (
    "train.save_checkpoint_steps",
    "train.save_checkpoint_num",
    "train.log_steps",
    "train.eval_steps",
    "train.device",
    "data.num_workers",
)


def resume_changes(saved: PretrainConfig, new: PretrainConfig) -> list[str]:
    """The settings that differ between a run's saved config and the one it is resumed with, other than
    those in `RESUMABLE`, as "key: saved -> new". The model is compared as resolved (preset + overrides)."""

    def flat(config: PretrainConfig) -> dict[str, Any]:
        out = {f"model.{k}": v for k, v in config.bert_config().to_dict().items()}
        for section, values in OmegaConf.to_container(OmegaConf.structured(config)).items():
            if section != "model":
                out |= {f"{section}.{k}": v for k, v in values.items()}
        return out

    a, b = flat(saved), flat(new)
    return [
        f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
        for key in sorted(a.keys() | b.keys())
        if key not in RESUMABLE and a.get(key) != b.get(key)
    ]


def save_config(config, path: str | Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(config)))
