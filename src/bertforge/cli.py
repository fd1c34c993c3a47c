"""`bertforge` command line: parse arguments, call the Python API, print. User errors become one line + exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def cmd_extract_wiki(args: argparse.Namespace) -> None:
    from bertforge.data.wiki import extract_wiki

    report = extract_wiki(
        args.dump,
        args.output,
        shard_size_mb=args.shard_size,
        min_chars=args.min_chars,
        keep_titles=args.keep_titles,
        templates=args.templates,
        processes=args.processes,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"{args.output}: {report.summary()}")


def cmd_create_pretraining_data(args: argparse.Namespace) -> None:
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


def cmd_convert_data(args: argparse.Namespace) -> None:
    from bertforge.data.convert import convert_tfrecords

    schema = convert_tfrecords(args.input, args.output, vocab_file=args.vocab, overwrite=args.overwrite)
    print(
        f"{args.output}: {schema['instances']} instances ({schema['tokens']} tokens) in {len(schema['shards'])} "
        f"shard(s) in {schema['seconds']:.1f}s"
    )


def cmd_inspect(args: argparse.Namespace) -> None:
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


# Model-zoo style flags of `pretrain` and the config keys they set.
PRETRAIN_FLAGS = {
    "train_steps": ("train.train_steps", int),
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "accumulation_steps": ("train.accumulation_steps", int),
    "save_checkpoint_steps": ("train.save_checkpoint_steps", int),
    "save_checkpoint_num": ("train.save_checkpoint_num", int),
    "init_checkpoint": ("train.init_checkpoint", str),
    "seed": ("train.seed", int),
    "precision": ("train.precision", str),
    "device": ("train.device", str),
    "data": ("data.path", str),
}


def dotted_overrides(extra: list[str]) -> list[str]:
    """`--optimizer.learning_rate 1e-4` / `--optimizer.learning_rate=1e-4` -> `optimizer.learning_rate=1e-4`."""
    out, i = [], 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise BertforgeError(
                f"unrecognized argument {arg!r} (config keys look like --optimizer.learning_rate 1e-4)"
            )
        if "=" in arg:
            out.append(arg[2:])
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{arg[2:]}={extra[i + 1]}")
            i += 2
        else:
            raise BertforgeError(f"{arg} needs a value")
    return out


def cmd_pretrain(args: argparse.Namespace) -> None:
    from bertforge.training.config import load_config
    from bertforge.training.pretrain import pretrain

    overrides = [
        f"{key}={getattr(args, flag)}" for flag, (key, _) in PRETRAIN_FLAGS.items() if getattr(args, flag) is not None
    ]
    config = load_config(args.config, overrides + dotted_overrides(args.overrides))
    final = pretrain(config, args.output, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {final}")


FINETUNE_FLAGS = {
    "train": ("task.train", str),
    "dev": ("task.dev", str),
    "test": ("task.test", str),
    "init": ("init", str),
    "task": ("task.format", str),
    "labels": ("task.labels", str),
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "max_seq_length": ("task.max_seq_length", int),
    "learning_rate": ("optimizer.learning_rate", float),
    "optimizer": ("optimizer.name", str),
    "assessment_method": ("task.assessment_method", str),
    "seed": ("train.seed", int),
    "device": ("train.device", str),
}


def cmd_finetune(args: argparse.Namespace) -> None:
    from bertforge.training.config import load_config
    from bertforge.training.finetune import FinetuneConfig, finetune

    overrides = [
        f"{key}={getattr(args, flag)}" for flag, (key, _) in FINETUNE_FLAGS.items() if getattr(args, flag) is not None
    ]
    overrides += [f"{name}={str(getattr(args, name)).lower()}" for name in ("do_train", "do_eval", "do_predict")]
    overrides += ["task.skip_bad_lines=true"] if args.skip_bad_lines else []
    if args.seeds:
        overrides.append(f"seeds=[{args.seeds}]")
    config = load_config(args.config, overrides + dotted_overrides(args.overrides), FinetuneConfig)
    finetune(config, args.output, progress=not args.quiet)


def cmd_pretrain_eval(args: argparse.Namespace) -> None:
    from bertforge.training.pretrain import evaluate

    result = evaluate(
        args.model, args.data, batch_size=args.batch_size, device=args.device, limit=args.limit, progress=not args.quiet
    )
    if result is not None:
        print(json.dumps(result, indent=2))


def cmd_plot(args: argparse.Namespace) -> None:
    from bertforge.training.plot import plot_run

    for path in plot_run(args.run_dir, args.output):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details (unused tensors, ...)"
    )
    parser = argparse.ArgumentParser(
        prog="bertforge",
        parents=[common],
        description="Pretrain, fine-tune, evaluate, export and serve BERT and NEZHA models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "convert", parents=[common], help="convert a checkpoint (Hugging Face, bertforge, MindSpore .ckpt)"
    )
    p.add_argument("source", help="checkpoint directory or weights file (.safetensors, .bin, .ckpt)")
    p.add_argument("output", help="output directory (--to hf) or .ckpt file (--to mindspore)")
    p.add_argument("--to", choices=["hf", "mindspore"], default="hf", help="output format (default: hf)")
    p.add_argument("--config", help="config file or preset, needed when none lies beside the weights (.ckpt)")
    p.add_argument(
        "--head",
        default="auto",
        choices=[
            "auto",
            "encoder",
            "pretraining",
            "sequence-classification",
            "token-classification",
            "question-answering",
        ],
        help="model class to load (default: detected from the weights)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "tokenize", parents=[common], help="WordPiece-tokenize text (arguments, or one text per stdin line)"
    )
    p.add_argument("--vocab", required=True, help="vocab.txt")
    p.add_argument("--no-lower-case", dest="lower_case", action="store_false", help="keep case and accents")
    p.add_argument("--ids", action="store_true", help="print JSON with tokens and ids")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=cmd_tokenize)
    p = sub.add_parser(
        "extract-wiki",
        parents=[common],
        help="Wikipedia pages-articles dump -> one sentence per line, blank line between articles",
    )
    p.add_argument("dump", help="pages-articles .xml, .xml.bz2 or .xml.gz")
    p.add_argument("--output", required=True, help="output directory for wiki_NNNNN.txt shards")
    p.add_argument("--shard-size", type=float, default=100.0, help="MB of text per shard (default 100)")
    p.add_argument("--min-chars", type=int, default=100, help="skip articles shorter than this (default 100)")
    p.add_argument("--keep-titles", action="store_true", help="keep each article's title as its first line")
    p.add_argument(
        "--no-templates",
        dest="templates",
        action="store_false",
        help="do not expand templates (faster; loses their text)",
    )
    p.add_argument("--processes", type=int, default=None, help="wikiextractor processes (default: CPUs - 1)")
    p.add_argument("--overwrite", action="store_true", help="replace wiki_*.txt shards already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract_wiki)

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
    p.add_argument("--chunk-mb", type=float, default=1.0, help="text per unit of work (default 1)")
    p.add_argument("--shard-mb", type=float, default=64.0, help="text per output shard (default 64)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_create_pretraining_data)

    p = sub.add_parser("convert-data", parents=[common], help="Google/NVIDIA pretraining TFRecords -> bertforge shards")
    p.add_argument("--input", nargs="+", required=True, help="TFRecord files (plain, gzip or zlib)")
    p.add_argument("--output", required=True, help="output dataset directory")
    p.add_argument("--vocab", help="the vocab the records were made with (checked, and its hash recorded)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output")
    p.set_defaults(func=cmd_convert_data)

    p = sub.add_parser("inspect", parents=[common], help="print pretraining records and dataset statistics")
    p.add_argument("path", nargs="+", help="a bertforge dataset directory or TFRecord file(s)")
    p.add_argument("--limit", type=int, default=5, help="records to print (default 5)")
    p.add_argument("--stats-limit", type=int, default=None, help="compute statistics on the first N instances only")
    p.add_argument("--vocab", help="vocab.txt (default: the one the dataset was made with, if still there)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser(
        "pretrain",
        parents=[common],
        help="pretrain a BERT/NEZHA (MLM + NSP); torchrun for DDP",
        epilog="Any config key can be set as --section.key value, e.g. --optimizer.learning_rate 1e-4.",
    )
    p.add_argument("--config", help="YAML config (configs/pretrain/*.yaml); defaults: bert-base with LAMB")
    p.add_argument("--output", required=True, help="run directory (checkpoints, metrics, config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for flag, (key, kind) in PRETRAIN_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {key}")
    p.set_defaults(func=cmd_pretrain, overrides=[])

    p = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune a model on a task",
        epilog="Any config key can be set as --section.key value, e.g. --optimizer.weight_decay 0.",
    )
    p.add_argument("kind", choices=["classification"], help="the task family")
    p.add_argument("--output", required=True, help="output directory (best model, eval_results.json, predictions)")
    p.add_argument("--config", help="YAML config (configs/finetune/classification.yaml)")
    for flag, (key, kind) in FINETUNE_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {key}")
    for name, default in (("do_train", True), ("do_eval", True), ("do_predict", False)):
        p.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction, default=default)
    p.add_argument("--seeds", help="comma-separated seeds: one run each, mean ± std reported")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip (and count) malformed input lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune, overrides=[])

    p = sub.add_parser("pretrain-eval", parents=[common], help="MLM and NSP accuracy of a checkpoint on a dataset")
    p.add_argument("--model", required=True, help="checkpoint (any format from_pretrained reads)")
    p.add_argument("--data", required=True, help="dataset directory or TFRecord file(s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, help="evaluate the first N instances only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain_eval)

    p = sub.add_parser("plot", parents=[common], help="PNG curves of a run's metrics")
    p.add_argument("run_dir")
    p.add_argument("--output", help="folder for the PNGs (default: RUN_DIR/plots)")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("pretrain", "finetune"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        args.func(args)
    except (BertforgeError, FileNotFoundError) as exc:
        print(f"bertforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
