"""Training components (config, optimizers, schedule, mixed precision, metrics) used by the one loop
(`training.loop`). The recipes on it stay modules, `training.pretrain` and `training.finetune`, so that their
names keep meaning the modules."""

from bertforge.training.config import (
    DataConfig,
    LossScaleConfig,
    OptimizerConfig,
    PretrainConfig,
    TrainConfig,
    load_config,
)
from bertforge.training.metrics_log import MetricsLogger, read_metrics
from bertforge.training.optimizers import AdamW, Lamb, Momentum, build_optimizer, clip_gradients
from bertforge.training.precision import DynamicLossScaler, autocast_context
from bertforge.training.schedule import build_scheduler

__all__ = [
    "AdamW",
    "DataConfig",
    "DynamicLossScaler",
    "Lamb",
    "LossScaleConfig",
    "MetricsLogger",
    "Momentum",
    "OptimizerConfig",
    "PretrainConfig",
    "TrainConfig",
    "autocast_context",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "load_config",
    "read_metrics",
]
