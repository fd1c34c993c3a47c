"""`bertforge` command line: one small module per subcommand (parse, call the Python API, print).
User errors become one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bertforge import __version__
from bertforge.errors import BertforgeError, Interrupted

# Subcommand -> its module. A command imports only its own module, so the light ones (tokenize, extract-wiki,
# create-pretraining-data, ...) start without loading torch, the slowest import; --help and mistakes load them all.
SUBCOMMANDS = {
    "convert": "convert",
    "tokenize": "tokenize",
    "extract-wiki": "extract_wiki",
    "create-pretraining-data": "create_data",
    "convert-data": "convert_data",
    "inspect": "inspect",
    "pretrain": "pretrain",
    "finetune": "finetune",
    "predict": "predict",
    "export": "export",
    "serve": "serve",
    "pretrain-eval": "pretrain_eval",
    "plot": "plot",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `command` alone when it names one."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details (unused tensors, ...)"
    )
    parser = argparse.ArgumentParser(
        prog="bertforge",
        parents=[common],
        description="Pretrain, fine-tune, evaluate, export and serve BERT and NEZHA models.",
    )
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        if command in (None, name):
            importlib.import_module(f"bertforge.cli.{module}").register(sub, common)
    return parser


def _joined_dotted(argv: list[str]) -> list[str]:
    """`--section.key value` -> `--section.key=value`, so that argparse never takes the value for a positional
    argument (`predict`'s texts)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        dotted = arg.startswith("--") and "=" not in arg and "." in arg
        if dotted and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _joined_dotted(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # without building every subcommand's parser
        print(f"bertforge {__version__}")
        return 0
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    # Library code logs; the command line shows its messages plainly on stderr (details with -v).
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("bertforge")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    try:
        args.func(args)
    except (BertforgeError, FileNotFoundError) as exc:
        print(f"bertforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:  # a run that saved its state and stopped: not a success
        print(f"bertforge {args.command}: interrupted ({exc.signal_name}): {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"bertforge {args.command}: interrupted (SIGINT)", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return 0


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a message is logged (it may be replaced while we run)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass
