"""`bertforge` command line: parse arguments, call the Python API, print. User errors become one line + exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bertforge.errors import BertforgeError


def cmd_convert(args: argparse.Namespace) -> None:
    from bertforge.modeling.auto import MODEL_CLASSES, load_model

    model = load_model(args.source, config=args.config, head=args.head)
    if args.to == "mindspore":
        out = model.save_mindspore(args.output, overwrite=args.overwrite)
    else:
        out = model.save_pretrained(args.output, overwrite=args.overwrite)
    head = next(name for name, cls in MODEL_CLASSES.items() if type(model) is cls)
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.source} ({head}, {params / 1e6:.1f}M parameters) -> {out} [{args.to}]")


def cmd_tokenize(args: argparse.Namespace) -> None:
    from bertforge.tokenization import FullTokenizer

    tokenizer = FullTokenizer(args.vocab, do_lower_case=args.lower_case)
    lines = args.text or [line.rstrip("\n") for line in sys.stdin]
    for line, tokens in zip(lines, tokenizer.tokenize_batch(lines)):
        if args.ids:
            print(json.dumps({"tokens": tokens, "ids": tokenizer.convert_tokens_to_ids(tokens)}, ensure_ascii=False))
        else:
            print(" ".join(tokens))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details (unused tensors, ...)")
    parser = argparse.ArgumentParser(
        prog="bertforge", parents=[common],
        description="Pretrain, fine-tune, evaluate, export and serve BERT and NEZHA models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", parents=[common], help="convert a checkpoint (Hugging Face, bertforge, MindSpore .ckpt)")
    p.add_argument("source", help="checkpoint directory or weights file (.safetensors, .bin, .ckpt)")
    p.add_argument("output", help="output directory (--to hf) or .ckpt file (--to mindspore)")
    p.add_argument("--to", choices=["hf", "mindspore"], default="hf", help="output format (default: hf)")
    p.add_argument("--config", help="config file or preset, needed when none lies beside the weights (.ckpt)")
    p.add_argument("--head", default="auto",
                   choices=["auto", "encoder", "pretraining", "sequence-classification", "token-classification",
                            "question-answering"], help="model class to load (default: detected from the weights)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("tokenize", parents=[common], help="WordPiece-tokenize text (arguments, or one text per stdin line)")
    p.add_argument("--vocab", required=True, help="vocab.txt")
    p.add_argument("--no-lower-case", dest="lower_case", action="store_false", help="keep case and accents")
    p.add_argument("--ids", action="store_true", help="print JSON with tokens and ids")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=cmd_tokenize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        args.func(args)
    except (BertforgeError, FileNotFoundError) as exc:
        print(f"bertforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
