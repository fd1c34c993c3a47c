"""Config flags shared by the commands: named flags that set config keys, `--section.key value`, and the
`--task.KEY VALUE` settings of `predict` and `serve`."""

from __future__ import annotations

import argparse
from typing import Any

from bertforge.errors import BertforgeError


def add_flags(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, type]]) -> None:
    for flag, (key, kind) in flags.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {key}")
    parser.set_defaults(accepts_overrides=True)


def flag_overrides(args: argparse.Namespace, flags: dict[str, tuple[str, type]]) -> list[str]:
    """`key=value` for each named flag given, then the `--section.key value` pairs."""
    named = [f"{key}={getattr(args, flag)}" for flag, (key, _) in flags.items() if getattr(args, flag) is not None]
    return named + dotted_overrides(args.overrides)


def dotted_overrides(extra: list[str]) -> list[str]:
    """`--optimizer.learning_rate=1e-4` -> `optimizer.learning_rate=1e-4`. The command line has already joined
    `--section.key value` pairs (`bertforge.cli._joined_dotted`), so a key left without `=` had no value."""
    out = []
    for arg in extra:
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise BertforgeError(
                f"unrecognized argument {arg!r} (config keys look like --optimizer.learning_rate 1e-4)"
            )
        if "=" not in arg:
            raise BertforgeError(f"{arg} needs a value")
        out.append(arg[2:])
    return out


def task_options(overrides: list[str]) -> dict[str, Any]:
    """`--task.KEY VALUE` pairs -> {KEY: value} (a model's task settings for `predict` and `serve`), values read
    as YAML scalars (2.5, true, text)."""
    import yaml

    options = {}
    for item in dotted_overrides(overrides):
        key, value = item.split("=", 1)
        if not key.startswith("task."):
            raise BertforgeError(f"only --task.KEY VALUE settings apply here, not --{key}")
        options[key[5:]] = yaml.safe_load(value)
    return options
