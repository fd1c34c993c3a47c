"""`bertforge extract-wiki`: a Wikipedia dump -> one sentence per line, a blank line between articles."""

from __future__ import annotations

import argparse

from bertforge.extras import note, require


def register(sub, common) -> None:
    p = sub.add_parser(
        "extract-wiki",
        parents=[common],
        help="Wikipedia pages-articles dump -> one sentence per line, blank line between articles",
        epilog=note("data") or None,
    )
    p.add_argument("dump", help="pages-articles .xml, .xml.bz2 or .xml.gz")
    p.add_argument("--output", required=True, help="output directory for wiki_NNNNN.txt shards")
    p.add_argument("--shard-size", type=float, default=100.0, help="MB of text per shard (default 100)")
    p.add_argument("--min-chars", type=int, default=100, help="skip articles shorter than this (default 100)")
    p.add_argument("--keep-titles", action="store_true", help="keep each article's title as its first line")
    p.add_argument(
        "--keep-headings", action="store_true", help='keep section headings ("History.") as lines of their own'
    )
    p.add_argument(
        "--no-templates",
        dest="templates",
        action="store_false",
        help="do not expand templates (faster; loses their text)",
    )
    p.add_argument("--processes", type=int, default=None, help="wikiextractor processes (default: CPUs - 1)")
    p.add_argument("--overwrite", action="store_true", help="replace wiki_*.txt shards already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    require("data", "extract-wiki")
    from bertforge.data.wiki import extract_wiki

    report = extract_wiki(
        args.dump,
        args.output,
        shard_size_mb=args.shard_size,
        min_chars=args.min_chars,
        keep_titles=args.keep_titles,
        keep_headings=args.keep_headings,
        templates=args.templates,
        processes=args.processes,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"{args.output}: {report.summary()}")
