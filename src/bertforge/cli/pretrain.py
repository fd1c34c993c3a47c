"""`bertforge pretrain`: masked-LM + next-sentence pretraining (torchrun for DDP)."""

from __future__ import annotations

import argparse

from bertforge.cli.overrides import add_flags, flag_overrides

# Model-zoo style flags and the config keys they set.
FLAGS = {
    "train_steps": ("train.train_steps", int),
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "accumulation_steps": ("train.accumulation_steps", int),
    "save_checkpoint_steps": ("train.save_checkpoint_steps", int),
    "save_checkpoint_num": ("train.save_checkpoint_num", int),
    "init_checkpoint": ("train.init_checkpoint", str),
    "seed": ("train.seed", int),
    "precision": ("train.precision", str),
    "device": ("train.device", str),
    "data": ("data.path", str),
}


def register(sub, common) -> None:
    p = sub.add_parser(
        "pretrain",
        parents=[common],
        help="pretrain a BERT/NEZHA (MLM + NSP); torchrun for DDP",
        epilog="Any config key can be set as --section.key value, e.g. --optimizer.learning_rate 1e-4.",
    )
    p.add_argument("--config", help="YAML config (configs/pretrain/*.yaml); defaults: bert-base with LAMB")
    p.add_argument("--output", required=True, help="run directory (checkpoints, metrics, config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(p, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.training.config import load_config
    from bertforge.training.pretrain import pretrain

    config = load_config(args.config, flag_overrides(args, FLAGS))
    final = pretrain(config, args.output, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {final}")
