"""`bertforge predict`: a fine-tuned model folder on raw text -> JSON lines, in input order."""

from __future__ import annotations

import argparse
import logging

from bertforge.cli.overrides import task_options
from bertforge.inference.backends import BACKENDS
from bertforge.inference.files import FORMATS

log = logging.getLogger("bertforge")


def register(sub, common) -> None:
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="predict raw text with a fine-tuned model folder (JSON lines out)",
        description="Inputs: TEXT arguments (--question and --context for QA), or --input FILE (one text per line; "
        ".jsonl with text/text_b, or question/context for QA; .csv/.tsv with named columns) or - for standard "
        "input. Output: one JSON line per input, in order. A model's task settings can be changed for this run "
        "as --task.KEY VALUE (e.g. --task.null_threshold 2.5 for a SQuAD v2.0 model).",
    )
    p.add_argument("text", nargs="*", help="texts to predict (instead of --input)")
    p.add_argument("--question", help="question answering: the question (with --context)")
    p.add_argument("--context", help="question answering: the passage that holds the answer")
    p.add_argument("--model", required=True, help="model folder (from finetune's OUTPUT/best, convert, transformers)")
    p.add_argument("--input", help="input file, or - for standard input")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: by extension; text)")
    p.add_argument("--text-column", default="text", help="field/column holding the text (default: text)")
    p.add_argument("--text-b-column", default="text_b", help="field/column holding the second text of a pair")
    p.add_argument("--output", help="JSON lines file (default: standard output); written atomically")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, help="default: the model's own")
    p.add_argument("--backend", choices=list(BACKENDS), default="torch")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's)")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip (and count) malformed input lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> None:
    from bertforge.errors import BertforgeError
    from bertforge.inference import Predictor
    from bertforge.inference.files import InputReport, jsonl_output, predict_file, read_inputs, write_record

    pair = args.question is not None or args.context is not None
    if pair and (args.question is None or args.context is None):
        raise BertforgeError("--question and --context go together")
    if (bool(args.text) or pair) == bool(args.input) or (args.text and pair):
        raise BertforgeError("give either TEXT arguments, --question with --context, or --input FILE (- for stdin)")
    predictor = Predictor.from_pretrained(
        args.model,
        backend=args.backend,
        device=args.device,
        threads=args.threads,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        task_options=task_options(args.overrides),
    )
    report = InputReport(args.input or "arguments")
    with jsonl_output(args.output, overwrite=args.overwrite) as stream:
        if pair:
            record = {"question": args.question, "context": args.context}
            (_, result), *_ = predictor.predict_examples([predictor.example(record, "0", "arguments")])
            write_record(stream, predictor.task.record(result))
        elif args.text:
            examples = [predictor.example(text, str(i)) for i, text in enumerate(args.text)]
            for text, (_, result) in zip(args.text, predictor.predict_examples(examples)):
                write_record(stream, {"text": text} | predictor.task.record(result))
        else:
            inputs = read_inputs(
                args.input,
                report,
                format=args.format,
                text_column=args.text_column,
                text_b_column=args.text_b_column,
                skip_bad_lines=args.skip_bad_lines,
                fields=predictor.task.fields,
            )
            predict_file(predictor, args.input, inputs, stream, progress=not args.quiet)
    if report.skipped:
        log.warning(report.summary())
    if predictor.truncated:
        log.warning(
            f"{predictor.truncated} of {predictor.examples} inputs truncated to {predictor.max_seq_length} tokens"
        )
    if args.output:
        log.info(f"{args.output}: {predictor.examples} predictions")
