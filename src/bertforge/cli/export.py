"""`bertforge export`: a fine-tuned model folder -> an ONNX model folder for `predict --backend onnx`."""

from __future__ import annotations

import argparse

from bertforge.export import OPSET
from bertforge.extras import note


def register(sub, common) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a fine-tuned model to ONNX (optimized, optionally int8), verified against PyTorch",
        description="Writes OUTPUT/model.onnx (dynamic batch and sequence) with config.json, vocab.txt, "
        "bertforge.json and export_report.json (max |Δ| of the outputs, agreement of the predictions, and with "
        "--dev the task metric of both). Fails, writing nothing, when the fp32 model differs from PyTorch. The task "
        "settings the folder keeps can be changed as --task.KEY VALUE (as for predict).",
        epilog=note("export") or None,
    )
    p.add_argument("--model", required=True, help="fine-tuned model folder (finetune's OUTPUT/best)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization of the weights")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default: {OPSET})")
    p.add_argument("--dev", help="labelled dev file: the task metric with PyTorch and with ONNX Runtime")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> None:
    from bertforge.cli.overrides import task_options
    from bertforge.extras import require

    require("export", "export")
    from bertforge.export.onnx import export_folder

    report = export_folder(
        args.model,
        args.output,
        quantize=args.quantize,
        opset=args.opset,
        dev=args.dev,
        overwrite=args.overwrite,
        task_options=task_options(args.overrides),
    )
    sizes = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in report["sizes"].items())
    print(f"exported {args.model} -> {args.output} ({sizes})")
