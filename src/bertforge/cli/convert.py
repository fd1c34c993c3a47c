"""`bertforge convert`: a checkpoint from one layout to another (Hugging Face/bertforge folder, MindSpore .ckpt,
TensorFlow checkpoint in Google's layout)."""

from __future__ import annotations

import argparse

from bertforge.modeling.auto import MODEL_CLASSES


def register(sub, common) -> None:
    p = sub.add_parser(
        "convert", parents=[common], help="convert a checkpoint (Hugging Face, bertforge, MindSpore .ckpt, TensorFlow)"
    )
    p.add_argument(
        "source",
        help="checkpoint directory or weights file (.safetensors, .bin, .ckpt), or a TensorFlow checkpoint: its "
        "prefix (bert_model.ckpt), folder or `checkpoint` file",
    )
    p.add_argument("output", help="output directory (--to hf, --to tf) or .ckpt file (--to mindspore)")
    p.add_argument("--to", choices=["hf", "mindspore", "tf"], default="hf", help="output format (default: hf)")
    p.add_argument("--config", help="config file or preset, needed when none lies beside the weights (.ckpt)")
    p.add_argument(
        "--head", default="auto", choices=["auto", *MODEL_CLASSES], help="model class to load (default: detected)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from bertforge.model_folder import convert_checkpoint
    from bertforge.tasks import kinds_by_head

    done = convert_checkpoint(
        args.source,
        args.output,
        to=args.to,
        config=args.config,
        head=args.head,
        overwrite=args.overwrite,
        kinds=kinds_by_head(),
    )
    print(f"converted {args.source} ({done.head}, {done.parameters / 1e6:.1f}M parameters) -> {done.path} [{args.to}]")
