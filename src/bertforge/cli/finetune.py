"""`bertforge finetune <kind>`: fine-tune a model on a task (the kinds come from `bertforge.tasks`)."""

from __future__ import annotations

import argparse
import signal

from bertforge.cli.overrides import add_flags, flag_overrides
from bertforge.tasks import registered

FLAGS = {
    "train": ("task.train", str),
    "dev": ("task.dev", str),
    "test": ("task.test", str),
    "init": ("init", str),
    "task": ("task.format", str),
    "labels": ("task.labels", str),
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "max_seq_length": ("task.max_seq_length", int),
    "learning_rate": ("optimizer.learning_rate", float),
    "optimizer": ("optimizer.name", str),
    "assessment_method": ("task.assessment_method", str),
    "seed": ("train.seed", int),
    "device": ("train.device", str),
}


def register(sub, common) -> None:
    p = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune a model on a task",
        epilog="Any config key can be set as --section.key value, e.g. --optimizer.weight_decay 0.",
    )
    p.add_argument("kind", choices=list(registered()), help="the task family")
    p.add_argument("--output", required=True, help="output directory (best model, eval_results.json, predictions)")
    p.add_argument("--config", help="YAML config (configs/finetune/<kind>.yaml)")
    add_flags(p, FLAGS)
    for name, default in (("do_train", True), ("do_eval", True), ("do_predict", False)):
        p.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction, default=default)
    p.add_argument("--seeds", help="comma-separated seeds: one run each, mean ± std reported")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip (and count) malformed input lines")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.training.config import load_config
    from bertforge.training.finetune import config_class, finetune

    overrides = [f"kind={args.kind}"]
    overrides += [f"{name}={str(getattr(args, name)).lower()}" for name in ("do_train", "do_eval", "do_predict")]
    overrides += ["task.skip_bad_lines=true"] if args.skip_bad_lines else []
    overrides += [f"seeds=[{args.seeds}]"] if args.seeds else []
    config = load_config(args.config, overrides + flag_overrides(args, FLAGS), config_class(args.kind))
    finetune(config, args.output, progress=not args.quiet, resume=args.resume)
    for stop in (signal.SIGTERM, signal.SIGINT):  # the job has finished: a signal now must not turn 0 into 143
        signal.signal(stop, signal.SIG_IGN)
