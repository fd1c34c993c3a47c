"""`bertforge create-pretraining-data`: sentence-per-line text -> MLM/NSP instances in shards."""

from __future__ import annotations

import argparse
import os


def register(sub, common) -> None:
    p = sub.add_parser(
        "create-pretraining-data",
        parents=[common],
        help="sentence-per-line text -> MLM/NSP instances in shards (Google's algorithm)",
    )
    p.add_argument("--input", nargs="+", required=True, help="text files or directories (blank line between documents)")
    p.add_argument("--vocab", required=True, help="vocab.txt")
    p.add_argument("--output", required=True, help="output dataset directory")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--max-predictions-per-seq", type=int, default=20)
    p.add_argument("--masked-lm-prob", type=float, default=0.15)
    p.add_argument(
        "--dupe-factor",
        type=int,
        default=10,
        help="passes over the data with different masks/splits (with --dynamic-masking, 1 suffices)",
    )
    p.add_argument("--short-seq-prob", type=float, default=0.1)
    p.add_argument("--random-seed", type=int, default=12345)
    p.add_argument("--do-lower-case", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--whole-word-mask",
        action="store_true",
        help="mask whole words: WordPiece words, and jieba words in Chinese text",
    )
    p.add_argument("--dynamic-masking", action="store_true", help="store unmasked instances; draw masks at load time")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--chunk-mb",
        type=float,
        default=1.0,
        help="text per unit of work; a longer document is cut into pieces of this size (default 1)",
    )
    p.add_argument("--shard-mb", type=float, default=64.0, help="text per output shard (default 64)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.data.create import CreateOptions, create_pretraining_data

    options = CreateOptions(
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        dupe_factor=args.dupe_factor,
        short_seq_prob=args.short_seq_prob,
        random_seed=args.random_seed,
        do_lower_case=args.do_lower_case,
        whole_word_mask=args.whole_word_mask,
        dynamic_masking=args.dynamic_masking,
        chunk_mb=args.chunk_mb,
        shard_mb=args.shard_mb,
    )
    report = create_pretraining_data(
        args.input,
        args.vocab,
        args.output,
        options,
        workers=args.workers,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"{args.output}: {report.summary()}")
