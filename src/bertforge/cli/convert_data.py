"""`bertforge convert-data`: Google/NVIDIA pretraining TFRecords -> bertforge shards."""

from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("convert-data", parents=[common], help="Google/NVIDIA pretraining TFRecords -> bertforge shards")
    p.add_argument("--input", nargs="+", required=True, help="TFRecord files (plain, gzip or zlib)")
    p.add_argument("--output", required=True, help="output dataset directory")
    p.add_argument("--vocab", help="the vocab the records were made with (checked, and its hash recorded)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.data.convert import convert_tfrecords

    schema = convert_tfrecords(args.input, args.output, vocab_file=args.vocab, overwrite=args.overwrite)
    print(
        f"{args.output}: {schema['instances']} instances ({schema['tokens']} tokens) in {len(schema['shards'])} "
        f"shard(s) in {schema['seconds']:.1f}s"
    )
