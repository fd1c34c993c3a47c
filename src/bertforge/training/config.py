"""Pretraining run configuration: typed defaults < YAML file < command-line overrides (OmegaConf merges).

The sections mirror the MindSpore model zoo's `pretrain_config.yaml`: the network (`model`, any
`BertConfig` field plus a `preset`), the run (`train`), the optimizer with its learning-rate schedule and
clipping (`optimizer`), fp16 loss scaling (`loss_scale`) and data loading (`data`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.modeling.config import BertConfig


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


_CHOICES = {
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
    "optimizer.name": ("lamb", "adamw", "momentum"),
    "optimizer.clip_mode": ("global", "per_tensor"),
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, schema_class: type = None):
    """Defaults, then the YAML file, then `key.sub=value` overrides; errors name the key and suggest one.

    `schema_class` is the dataclass of the job's config (default: `PretrainConfig`)."""
    schema = OmegaConf.structured(schema_class or PretrainConfig)
    try:
        merged = schema
        if path is not None:
            if not Path(path).is_file():
                raise BertforgeError(f"config file {path} does not exist")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides or []))
    except (ConfigKeyError, ConfigAttributeError) as exc:
        raise BertforgeError(_unknown_key_message(exc, schema, path)) from None
    except ValidationError as exc:
        raise BertforgeError(f"{path or 'command line'}: {exc.msg.splitlines()[0]} (key {exc.full_key})") from None
    except OmegaConfBaseException as exc:
        raise BertforgeError(f"{path or 'command line'}: {exc}") from None
    config = OmegaConf.to_object(merged)
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise BertforgeError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    if isinstance(config, PretrainConfig):
        config.bert_config()  # validate the model section now, not after data loading
    return config


def _unknown_key_message(exc: OmegaConfBaseException, schema: DictConfig, path) -> str:
    key = getattr(exc, "full_key", None) or str(exc)
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    valid = list(node.keys()) if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
    return f"{path or 'command line'}: unknown config key '{key}'{hint}"


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
