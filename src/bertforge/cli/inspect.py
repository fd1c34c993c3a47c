"""`bertforge inspect`: pretraining records, decoded, and dataset statistics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub, common) -> None:
    p = sub.add_parser("inspect", parents=[common], help="print pretraining records and dataset statistics")
    p.add_argument("path", nargs="+", help="a bertforge dataset directory or TFRecord file(s)")
    p.add_argument("--limit", type=int, default=5, help="records to print (default 5)")
    p.add_argument("--stats-limit", type=int, default=None, help="compute statistics on the first N instances only")
    p.add_argument("--vocab", help="vocab.txt (default: the one the dataset was made with, if still there)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.data.dataset import PretrainingDataset
    from bertforge.data.inspect import dataset_statistics, format_record

    dataset = PretrainingDataset(args.path if len(args.path) > 1 else args.path[0])
    vocab = args.vocab or _recorded_vocab(dataset)
    if vocab is not None:
        from bertforge.tokenization import FullTokenizer

        dataset.check_vocab(len(FullTokenizer(vocab)), vocab)
        to_tokens = FullTokenizer(vocab).convert_ids_to_tokens
    else:
        to_tokens = lambda ids: [str(i) for i in ids]  # noqa: E731
    records = [dataset[i] for i in range(min(args.limit, len(dataset)))]
    stats = dataset_statistics(dataset, limit=args.stats_limit)
    if args.json:
        print(
            json.dumps(
                {"records": [{k: v.tolist() for k, v in r.items()} for r in records], "statistics": stats},
                ensure_ascii=False,
            )
        )
        return
    for i, record in enumerate(records):
        print(f"[{i}] {format_record(record, to_tokens)}")
    print(json.dumps(stats, indent=2))


def _recorded_vocab(dataset) -> str | None:
    """The vocab file the dataset was made with, if it is still where it was."""
    params = (dataset.schema or {}).get("parameters", {})
    path = params.get("vocab", {}).get("path")
    return path if path and Path(path).is_file() else None
