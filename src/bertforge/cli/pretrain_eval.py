"""`bertforge pretrain-eval`: MLM and NSP accuracy of a checkpoint on a dataset."""

from __future__ import annotations

import argparse
import json


def register(sub, common) -> None:
    p = sub.add_parser("pretrain-eval", parents=[common], help="MLM and NSP accuracy of a checkpoint on a dataset")
    p.add_argument("--model", required=True, help="checkpoint (any format from_pretrained reads)")
    p.add_argument("--data", required=True, help="dataset directory or TFRecord file(s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, help="evaluate the first N instances only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.training.pretrain import evaluate

    result = evaluate(
        args.model, args.data, batch_size=args.batch_size, device=args.device, limit=args.limit, progress=not args.quiet
    )
    print(json.dumps(result, indent=2))
