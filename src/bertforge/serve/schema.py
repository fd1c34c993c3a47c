"""The HTTP contract of `POST /predict` and `GET /info`: the body is decoded here (UTF-8, JSON, the batch limits);
what it must hold, and what the answer looks like, is the served task's (`Task.serving`)."""

from __future__ import annotations

import json
from typing import Any

from bertforge import __version__
from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.serve.errors import ApiError
from bertforge.serve.options import ServeOptions
from bertforge.tasks.requests import PredictRequest, RequestError, Serving


def serving(predictor: Predictor) -> Serving:
    """The served task's HTTP contract; a task without one cannot be served."""
    if predictor.task.serving is None:
        raise BertforgeError(f"the {predictor.task.kind} task has no HTTP contract (Task.serving); it cannot be served")
    return predictor.task.serving


def parse_request(body: bytes, contract: Serving, max_client_batch_size: int) -> PredictRequest:
    """A /predict body -> the request, or an `ApiError` that names what is wrong."""
    if not body.strip():
        raise ApiError("empty", f"the request body is empty; send JSON like {json.dumps(contract.example)}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(
            "validation", f"the request body is not UTF-8: byte {body[exc.start]:#04x} at offset {exc.start}"
        ) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ApiError("validation", f"the request body is not JSON: {exc.msg} ({where})") from None
    except RecursionError:
        raise ApiError("validation", "the request body is not JSON this server reads: nested too deeply") from None
    try:
        request = contract.parse(data)
    except RequestError as exc:
        raise ApiError(exc.error_type, str(exc)) from None
    if not request.inputs:
        raise ApiError("empty", "no inputs: the batch is empty")
    if len(request.inputs) > max_client_batch_size:
        raise ApiError(
            "validation",
            f"batch size {len(request.inputs)} > maximum allowed batch size {max_client_batch_size}",
            status=413,
        )
    return request


def info(predictor: Predictor, options: ServeOptions, model_id: str) -> dict[str, Any]:
    """`GET /info`: what is served and under which limits (TEI's names where TEI has the setting)."""
    contract, settings = serving(predictor), predictor.settings
    about: dict[str, Any] = {"model_id": model_id, "task": predictor.task.kind} | contract.about(settings)
    return about | {
        "max_input_length": predictor.max_seq_length,
        "long_inputs": contract.long_inputs(settings, predictor.max_seq_length),
        "request_example": contract.example,
        "form": contract.form,
        "backend": type(predictor.backend).__name__.removesuffix("Backend").lower(),
        "version": __version__,
        "batching": options.batching,
        "max_batch_tokens": options.max_batch_tokens,
        "max_batch_size": options.max_batch_size,
        "max_wait_ms": options.max_wait_ms,
        "max_client_batch_size": options.max_client_batch_size,
        "max_concurrent_requests": options.max_concurrent_requests,
        "max_body_bytes": options.max_body_bytes,
    }
