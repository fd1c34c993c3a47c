"""`bertforge tokenize`: WordPiece tokens (or ids) of texts, Google-exact."""

from __future__ import annotations

import argparse
import io
import json
import sys

from bertforge.errors import BertforgeError


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
    lines = args.text or _stdin_lines()
    for line, tokens in zip(lines, tokenizer.tokenize_batch(lines)):
        if args.ids:
            print(json.dumps({"tokens": tokens, "ids": tokenizer.convert_tokens_to_ids(tokens)}, ensure_ascii=False))
        else:
            print(" ".join(tokens))


def _stdin_lines() -> list[str]:
    """Standard input's lines. One that is not UTF-8 text (invalid bytes, or the NULs of UTF-16) is skipped
    and counted on stderr; input in which no line is text is an error."""
    good, bad = [], []
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    for number, line in enumerate(stream, 1):
        if _is_text(line):
            good.append(line.rstrip("\n"))
        else:
            bad.append(number)
    if bad and not good:
        raise BertforgeError(f"stdin: none of its {len(bad)} lines is UTF-8 text (UTF-16? convert it to UTF-8)")
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        print(f"stdin: skipped {len(bad)} lines that are not UTF-8 text (lines {shown})", file=sys.stderr)
    return good


def _is_text(line: str) -> bool:
    """Decoded from valid UTF-8 (invalid bytes come through as lone surrogates) and free of NULs (UTF-16)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in line
