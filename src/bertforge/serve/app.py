"""`create_app(predictor, options)`: the FastAPI app of `bertforge serve`, with text-embeddings-inference's routes.

Routes: `POST /`, `/predict` and `/invocations` (the task's shapes, `bertforge.serve.schema`), `GET /health` and
`/ping`, `GET /info`, `GET /metrics` (Prometheus), `/docs` (the OpenAPI document as a page) and the demo page at
`GET /`; every GET route answers HEAD too, and a wrong method gets 405 with `Allow`. With an API key, every route
but /health, /ping, /metrics (unless --metrics-need-key) and the static pages (the demo page, /docs and its OpenAPI
document, which hold no model output) wants `Authorization: Bearer KEY`. Every error, ours or the framework's, is
TEI's body `{"error", "error_type"}`. Browsers may call from the origins of --cors-allow-origin (any, by default,
as in TEI); answers carry TEI's timing headers (`x-compute-time`, `x-queue-time`, ... in milliseconds).

A /predict request takes one of the `--max-concurrent-requests` slots only once its whole body has arrived (within
`--read-timeout`, else 408): clients that send their body slowly, or never, cannot crowd out the others.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
import warnings
from contextlib import aclosing, asynccontextmanager
from importlib import resources

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bertforge import __version__
from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.serve import schema
from bertforge.serve.batching import Batcher, Timing
from bertforge.serve.drain import Drain
from bertforge.serve.errors import ApiError
from bertforge.serve.options import ServeOptions
from bertforge.serve.prometheus import Metrics

log = logging.getLogger("bertforge")

PREDICT_ROUTES = ("/", "/predict", "/invocations")  # TEI's: its root, its own, SageMaker's
ROUTES = ("/predict", "/invocations", "/health", "/ping", "/info", "/metrics", "/", "/docs", "/openapi.json")
_ERRORS = {  # documented in the OpenAPI page, with TEI's examples
    400: ("the body is empty or not JSON, or a text is blank", "Empty"),
    401: ("no or another API key", "Unauthorized"),
    408: ("the body did not arrive within --read-timeout", "Timeout"),
    413: ("body over --max-body-bytes, or more inputs than --max-client-batch-size", "Validation"),
    422: ("not UTF-8, a wrong field, no inputs, an input too long without truncate, or untokenizable", "Validation"),
    424: ("the model failed", "Backend"),
    429: ("--max-concurrent-requests in flight", "Overloaded"),
    503: ("the server is stopping, and --drain-timeout passed before this request was answered", "Unhealthy"),
}
# TEI's timing headers (milliseconds), and ours: how many inputs were cut to fit.
TIMING_HEADERS = ("x-compute-type", "x-compute-time", "x-compute-characters", "x-compute-tokens", "x-total-time",
                  "x-tokenization-time", "x-queue-time", "x-inference-time", "x-truncated-inputs")  # fmt: skip


def create_app(predictor: Predictor, options: ServeOptions | None = None, *, model_id: str = "") -> FastAPI:
    """An app serving `predictor`; its batching worker starts and stops with the app (ASGI lifespan). `model_id`
    is the name shown in /info and the OpenAPI page, which need no API key: a name, never a path. `app.state`
    holds the options and the `Drain` that `serve` ends at its deadline."""
    options = options or ServeOptions()
    kind, contract = predictor.task.kind, schema.serving(predictor)
    metrics = Metrics()
    batcher = Batcher(
        predictor,
        metrics,
        max_batch_tokens=options.max_batch_tokens,
        max_batch_size=options.max_batch_size,
        max_wait_ms=options.max_wait_ms,
        batching=options.batching,
        limit=f"at most {predictor.max_seq_length} tokens",
    )
    about = schema.info(predictor, options, model_id)
    static = resources.files("bertforge.serve") / "static"
    page, docs_page = ((static / name).read_text(encoding="utf-8") for name in ("index.html", "docs.html"))
    in_flight = 0
    drain = Drain(options.drain_timeout)
    compute_type = "gpu" if str(getattr(predictor.backend, "device", "cpu")).startswith("cuda") else "cpu"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await anyio.to_thread.run_sync(batcher.stop)  # uvicorn has drained the requests by now

    app = FastAPI(
        title="bertforge serve",
        version=__version__,
        description=f"A fine-tuned {kind} model ({model_id or 'in memory'}), served with the routes, request and "
        f"error shapes of Hugging Face's text-embeddings-inference. A request: {contract.summary}.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: blank on an offline machine
        redoc_url=None,
    )
    app.state.options, app.state.drain = options, drain
    app.add_middleware(_Measure, metrics=metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_allow_origin),
        allow_methods=["GET", "HEAD", "POST"],
        allow_headers=["Content-Type", "Authorization"],
        expose_headers=list(TIMING_HEADERS),
    )
    for error_class in (ApiError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(error_class, _error_response)
    auth = [Depends(_bearer(options.api_key))] if options.api_key else []

    def get(path: str, **kwargs):
        """A GET route that answers HEAD too (the headers alone, as HTTP has it; the document lists the GET)."""
        return app.api_route(path, methods=["GET", "HEAD"], **kwargs)

    @get("/", include_in_schema=False)
    async def demo() -> HTMLResponse:
        return HTMLResponse(page)

    @get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)

    async def health() -> dict[str, str]:
        if not batcher.alive:
            raise ApiError("Unhealthy", "the model worker has stopped")
        return {"status": "ok"}

    get("/health", summary="200 while the model worker runs (no API key needed)")(health)
    get("/ping", summary="as /health (SageMaker's name)")(health)

    @get("/info", dependencies=auth, summary="the task, labels, maximum input length, backend, limits")
    async def info() -> dict:
        return about

    metrics_auth = auth if options.metrics_need_key else []

    @get("/metrics", dependencies=metrics_auth, summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def predict(request: Request) -> JSONResponse:
        nonlocal in_flight
        began = time.monotonic()
        with drain.waiting("sending its body"), metrics.receiving.track_inprogress():
            body = await _read_body(request, options.max_body_bytes, options.read_timeout)
        if in_flight >= options.max_concurrent_requests:
            raise ApiError(
                "Overloaded",
                f"Model is overloaded: {in_flight} requests in flight "
                f"(--max-concurrent-requests {options.max_concurrent_requests})",
            )
        in_flight += 1
        metrics.in_flight.inc()
        timing = Timing()
        try:
            with batcher.arriving():
                parsed = schema.parse_request(body, contract, options.max_client_batch_size)
                try:
                    examples = [predictor.example(raw, str(i)) for i, raw in enumerate(parsed.inputs)]
                except BertforgeError as exc:
                    raise ApiError("Validation", str(exc)) from None
                truncate = options.auto_truncate if parsed.truncate is None else parsed.truncate
                answer = batcher.submit(examples, truncate, timing)
            with drain.waiting("waiting for the model"):
                results, outputs = await answer
            response = JSONResponse(contract.respond(predictor.settings, parsed, results, outputs))
        finally:
            in_flight -= 1
            metrics.in_flight.dec()
        total = time.monotonic() - began
        characters = sum(map(_characters, parsed.inputs))
        response.headers.update(
            {
                "x-compute-type": compute_type,
                "x-compute-time": _ms(total),
                "x-compute-characters": str(characters),
                "x-compute-tokens": str(timing.tokens),
                "x-total-time": _ms(total),
                "x-tokenization-time": _ms(timing.tokenization),
                "x-queue-time": _ms(timing.queue),
                "x-inference-time": _ms(timing.inference),
                "x-truncated-inputs": str(timing.truncated),
            }
        )
        return response

    responses = {
        200: {"description": "the results", "content": {"application/json": {"schema": contract.response_schema}}},
    } | {
        status: {
            "description": why,
            "content": {"application/json": {"example": {"error": why, "error_type": error_type}}},
        }
        for status, (why, error_type) in _ERRORS.items()
        if status != 401 or options.api_key
    }
    for path in PREDICT_ROUTES:
        app.post(
            path,
            dependencies=auth,
            summary=f"predict with the {kind} model" + ("" if path == "/predict" else " (as /predict)"),
            description=contract.summary,
            response_class=JSONResponse,
            openapi_extra={
                "requestBody": {"required": True, "content": {"application/json": {"schema": contract.request_schema}}}
            },
            responses=responses,
        )(predict)
    app.openapi = functools.partial(_openapi, app)
    return app


def _characters(raw) -> int:
    """The characters of the texts in one raw input (a text, a pair, a record's string fields and lists)."""
    if isinstance(raw, str):
        return len(raw)
    if isinstance(raw, dict):
        return sum(map(_characters, raw.values()))
    return sum(map(_characters, raw)) if isinstance(raw, (list, tuple)) else 0


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document without HEAD operations (each is its GET's), cached as FastAPI does."""
    if app.openapi_schema is None:
        with warnings.catch_warnings():  # the GET and HEAD of a route share a function, hence an operation id
            warnings.filterwarnings("ignore", "Duplicate Operation ID")
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in spec["paths"].values():
            operations.pop("head", None)
        app.openapi_schema = spec
    return app.openapi_schema


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused (413) as soon as it is known to be over `limit` bytes: by its Content-Length before
    reading any of it, or while reading a body sent without one. 408 when it has not all come within `timeout`
    seconds; a client gone before sending it all is one log line and a 499 in /metrics, not a traceback."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, limit, at_least=True)
                    chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            "Timeout",
            f"the request body did not arrive within {timeout:g} s (--read-timeout): got {size} of "
            f"{declared or 'an unknown number of'} bytes",
        ) from None
    except ClientDisconnect:
        client = "{}:{}".format(*request.client) if request.client else "a client"
        log.warning("%s closed the connection after %d of %s bytes of its request body", client, size, declared or "?")
        raise ApiError("ClientClosed", "the client closed the connection before sending its whole body") from None
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> ApiError:
    more = "more than " if at_least else ""
    return ApiError(
        "Validation", f"request body of {more}{size} bytes exceeds the limit of {limit} (--max-body-bytes)", status=413
    )


def _bearer(key: str):
    """A dependency that lets a request through with `Authorization: Bearer KEY` only (and shows a lock on the
    OpenAPI page)."""
    scheme = HTTPBearer(auto_error=False, description="the server's --api-key")
    expected = key.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise ApiError("Unauthorized", "missing or wrong API key: send the header 'Authorization: Bearer KEY'")

    return check


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    """Any error as TEI's body: ours as raised, the framework's (404, 405 with its `Allow`, ...) with their status
    and headers, anything else as a 500 that names the exception (the traceback goes to the server's log)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, HTTPException):
        error_type = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Validation")
        return ApiError(error_type, str(exc.detail), status=exc.status_code, headers=exc.headers).response()
    if isinstance(exc, RequestValidationError):
        return ApiError("Validation", str(exc.errors())).response()
    return ApiError("Internal", f"internal error ({type(exc).__name__}): {exc}").response()


class _Measure:
    """ASGI middleware: every HTTP request counted by route and status code, and timed."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status, start = 500, time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
