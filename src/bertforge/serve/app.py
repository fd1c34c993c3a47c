"""`create_app(predictor, options)`: the FastAPI app of `bertforge serve`.

Routes: `POST /predict` (the task's shapes, `bertforge.serve.schema`), `GET /health`, `GET /info`, `GET /metrics`
(Prometheus), `/docs` (the OpenAPI document as a page) and the demo page at `/`. With an API key, every route but
/health and the static pages (the demo page, /docs and its OpenAPI document, which hold no model output) wants
`Authorization: Bearer KEY`. Every error, ours or the framework's, is TEI's body `{"error", "error_type"}`.

A /predict request takes one of the `--max-concurrent-requests` slots only once its whole body has arrived (within
`--read-timeout`, else 408): clients that send their body slowly, or never, cannot crowd out the others.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from contextlib import aclosing, asynccontextmanager
from importlib import resources

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
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
from bertforge.serve.batching import Batcher
from bertforge.serve.drain import Drain
from bertforge.serve.errors import ApiError
from bertforge.serve.options import ServeOptions
from bertforge.serve.prometheus import Metrics

log = logging.getLogger("bertforge")

ROUTES = ("/predict", "/health", "/info", "/metrics", "/", "/docs", "/openapi.json")
_ERRORS = {  # documented in the OpenAPI page, with TEI's examples
    400: ("no inputs, or an empty text", "empty"),
    401: ("no or another API key", "unauthorized"),
    408: ("the body did not arrive within --read-timeout", "timeout"),
    413: ("body over --max-body-bytes, or more inputs than --max-client-batch-size", "validation"),
    422: ("not UTF-8 or JSON, a wrong field, an input too long without truncate, or untokenizable", "validation"),
    424: ("the model failed", "backend"),
    429: ("--max-concurrent-requests in flight", "overloaded"),
    503: ("the server is stopping, and --drain-timeout passed before this request was answered", "unhealthy"),
}


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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await anyio.to_thread.run_sync(batcher.stop)  # uvicorn has drained the requests by now

    app = FastAPI(
        title="bertforge serve",
        version=__version__,
        description=f"A fine-tuned {kind} model ({model_id or 'in memory'}). A request: "
        + json.dumps(contract.example),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: blank on an offline machine
        redoc_url=None,
    )
    app.state.options, app.state.drain = options, drain
    app.add_middleware(_Measure, metrics=metrics)
    for error_class in (ApiError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(error_class, _error_response)
    auth = [Depends(_bearer(options.api_key))] if options.api_key else []

    @app.get("/", include_in_schema=False)
    async def demo() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)

    @app.get("/health", summary="200 while the model worker runs (no API key needed)")
    async def health() -> dict[str, str]:
        if not batcher.alive:
            raise ApiError("unhealthy", "the model worker has stopped")
        return {"status": "ok"}

    @app.get("/info", dependencies=auth, summary="the task, labels, maximum input length, backend, limits")
    async def info() -> dict:
        return about

    @app.get("/metrics", dependencies=auth, summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        dependencies=auth,
        summary=f"predict with the {kind} model",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": contract.request_schema}}}
        },
        responses={
            200: {"description": "the results", "content": {"application/json": {"schema": contract.response_schema}}},
        }
        | {
            status: {
                "description": why,
                "content": {"application/json": {"example": {"error": why, "error_type": error_type}}},
            }
            for status, (why, error_type) in _ERRORS.items()
        },
    )
    async def predict(request: Request) -> JSONResponse:
        nonlocal in_flight
        with drain.waiting("sending its body"), metrics.receiving.track_inprogress():
            body = await _read_body(request, options.max_body_bytes, options.read_timeout)
        if in_flight >= options.max_concurrent_requests:
            raise ApiError(
                "overloaded",
                f"Model is overloaded: {in_flight} requests in flight "
                f"(--max-concurrent-requests {options.max_concurrent_requests})",
            )
        in_flight += 1
        metrics.in_flight.inc()
        try:
            with batcher.arriving():
                parsed = schema.parse_request(body, contract, options.max_client_batch_size)
                try:
                    examples = [predictor.example(raw, str(i)) for i, raw in enumerate(parsed.inputs)]
                except BertforgeError as exc:
                    raise ApiError("validation", str(exc)) from None
                answer = batcher.submit(examples, parsed.truncate)
            with drain.waiting("waiting for the model"):
                results, outputs = await answer
            return JSONResponse(contract.respond(predictor.settings, parsed, results, outputs))
        finally:
            in_flight -= 1
            metrics.in_flight.dec()

    return app


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
            "timeout",
            f"the request body did not arrive within {timeout:g} s (--read-timeout): got {size} of "
            f"{declared or 'an unknown number of'} bytes",
        ) from None
    except ClientDisconnect:
        client = "{}:{}".format(*request.client) if request.client else "a client"
        log.warning("%s closed the connection after %d of %s bytes of its request body", client, size, declared or "?")
        raise ApiError("client_closed", "the client closed the connection before sending its whole body") from None
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> ApiError:
    more = "more than " if at_least else ""
    return ApiError(
        "validation", f"request body of {more}{size} bytes exceeds the limit of {limit} (--max-body-bytes)", status=413
    )


def _bearer(key: str):
    """A dependency that lets a request through with `Authorization: Bearer KEY` only (and shows a lock on the
    OpenAPI page)."""
    scheme = HTTPBearer(auto_error=False, description="the server's --api-key")
    expected = key.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise ApiError("unauthorized", "missing or wrong API key: send the header 'Authorization: Bearer KEY'")

    return check


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    """Any error as TEI's body: ours as raised, the framework's (404, 405, ...) with their status, anything else
    as a 500 that names the exception (the traceback goes to the server's log)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, HTTPException):
        error_type = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "validation")
        return ApiError(error_type, str(exc.detail), status=exc.status_code).response()
    if isinstance(exc, RequestValidationError):
        return ApiError("validation", str(exc.errors())).response()
    return ApiError("internal", f"internal error ({type(exc).__name__}): {exc}").response()


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
