"""`bertforge serve`: a fine-tuned model folder behind HTTP (TEI's /predict, /health, /info, /metrics, /docs,
a demo page at /), until SIGTERM or Ctrl-C, which finish the requests in flight (for up to --drain-timeout) and
exit 0."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bertforge.cli.overrides import task_options
from bertforge.inference.backends import BACKENDS
from bertforge.serve import ServeOptions

DEFAULTS = ServeOptions()


def register(sub, common) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve a fine-tuned model over HTTP (TEI's /predict, a demo page at /)",
        description='Serves POST /, /predict and /invocations (classifiers: TEI\'s shapes; NER: {"inputs": text | '
        '[texts]}; QA: {"question", "context"} or a list; Hugging Face InferenceClient\'s shapes too), GET /health, '
        "/ping, /info, /metrics (Prometheus), /docs and a demo page at /. Concurrent requests are batched (up to "
        "--max-batch-tokens, waiting at most --max-wait-ms). Prints one line with the URL when ready. "
        "A model's task settings can be changed as --task.KEY VALUE.",
    )
    p.add_argument("--model", required=True, help="model folder (finetune's OUTPUT/best, convert, export)")
    p.add_argument("--backend", choices=list(BACKENDS), default="torch", help="onnx: an exported folder")
    p.add_argument("--served-model-name", help="the model's name in /info and the OpenAPI page, which need no API "
                   "key (default: the model folder's base name; its path is never shown)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0: a free one, printed when ready)")
    p.add_argument("--threads", type=int, help="CPU threads of the model (default: the backend's)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--max-seq-length", type=int, help="default: the model's own")
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=DEFAULTS.max_batch_tokens,
        help=f"padded tokens (inputs x longest) in one forward pass (default: {DEFAULTS.max_batch_tokens})",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULTS.max_batch_size,
        help="inputs in one forward pass; more queued ones, sorted longest first, go in the next passes (less "
        f"padding than one wide pass) (default: {DEFAULTS.max_batch_size})",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULTS.max_wait_ms,
        help=f"how long a request waits for others to batch with (default: {DEFAULTS.max_wait_ms:g})",
    )
    p.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="one request per forward pass (a baseline for load tests)",
    )
    p.add_argument(
        "--max-client-batch-size",
        type=int,
        default=DEFAULTS.max_client_batch_size,
        help=f"inputs in one request (default: {DEFAULTS.max_client_batch_size}; more: 413)",
    )
    p.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=DEFAULTS.max_concurrent_requests,
        help="requests queued or running, counted once their body is in (default: "
        f"{DEFAULTS.max_concurrent_requests}; more: 429)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULTS.max_body_bytes,
        help=f"request body size (default: {DEFAULTS.max_body_bytes}; more: 413)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULTS.read_timeout,
        help=f"seconds a connection has to send a request's headers, then as many for its body (default: "
        f"{DEFAULTS.read_timeout:g}; then it is closed, or answered 408)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULTS.drain_timeout,
        help="seconds a stop (SIGTERM, Ctrl-C) waits for the requests in flight; those still unanswered then get 503 "
        f"and are logged (default: {DEFAULTS.drain_timeout:g}, under Kubernetes' 30 s before SIGKILL)",
    )
    p.add_argument(
        "--auto-truncate",
        action="store_true",
        help='cut inputs longer than the model takes when a request does not say "truncate" (default: '
        "refuse them with 422, so that no answer is silently about part of a text; TEI >= 1.9 cuts)",
    )
    p.add_argument(
        "--cors-allow-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin (https://app.example) whose pages may call this server from a browser; repeat "
        "for more (default: any origin, as in TEI)",
    )
    p.add_argument(
        "--metrics-need-key",
        action="store_true",
        help="/metrics wants the API key too (default: open to scrapers, as in TEI)",
    )
    p.add_argument("--api-key", default=os.environ.get("BERTFORGE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health, /ping, /metrics and the "
                   "static pages "
                   "(default: $BERTFORGE_API_KEY, which keeps the key out of the process list)")  # fmt: skip
    p.set_defaults(func=run, accepts_overrides=True)


# A server sees every (rows, width) shape of forward pass, and oneDNN keeps a compiled kernel per shape: with its
# default of 1,024 the server's memory grew by 360 MB in 160 s of load (MiniLM, 32 clients) and was still growing;
# with 16 it stayed flat, at the same requests/s (benchmarks/RESULTS.md). Set before the first kernel is built.
PRIMITIVE_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault(*PRIMITIVE_CACHE)  # the user's own setting wins
    from bertforge.inference import Predictor
    from bertforge.serve import create_app, serve

    options = ServeOptions(
        max_batch_tokens=args.max_batch_tokens,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        batching=args.batching,
        max_client_batch_size=args.max_client_batch_size,
        max_concurrent_requests=args.max_concurrent_requests,
        max_body_bytes=args.max_body_bytes,
        api_key=args.api_key,
        read_timeout=args.read_timeout,
        drain_timeout=args.drain_timeout,
        auto_truncate=args.auto_truncate,
        cors_allow_origin=tuple(args.cors_allow_origin or ("*",)),
        metrics_need_key=args.metrics_need_key,
    )
    predictor = Predictor.from_pretrained(
        args.model,
        backend=args.backend,
        device=args.device,
        threads=args.threads,
        max_seq_length=args.max_seq_length,
        task_options=task_options(args.overrides),
    )
    name = args.served_model_name or Path(args.model).resolve().name
    app = create_app(predictor, options, model_id=name)
    verbose = getattr(args, "verbose", False)
    serve(
        app,
        args.host,
        args.port,
        ready=lambda url: print(f"bertforge serve: ready at {url} ({predictor.task.kind}, {args.backend})", flush=True),
        log_level="info" if verbose else "warning",
    )
