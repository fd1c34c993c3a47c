"""`bertforge tokenize`: WordPiece tokens (or ids) of texts, Google-exact."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub, common) -> None:
    p = sub.add_parser(
        "tokenize", parents=[common], help="WordPiece-tokenize text (arguments, or one text per stdin line)"
    )
    p.add_argument("--vocab", required=True, help="vocab.txt")
    p.add_argument("--no-lower-case", dest="lower_case", action="store_false", help="keep case and accents")
    p.add_argument("--ids", action="store_true", help="print JSON with tokens and ids")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.tokenization import FullTokenizer

    tokenizer = FullTokenizer(args.vocab, do_lower_case=args.lower_case)
    lines = args.text or [line.rstrip("\n") for line in sys.stdin]
    for line, tokens in zip(lines, tokenizer.tokenize_batch(lines)):
        if args.ids:
            print(json.dumps({"tokens": tokens, "ids": tokenizer.convert_tokens_to_ids(tokens)}, ensure_ascii=False))
        else:
            print(" ".join(tokens))
