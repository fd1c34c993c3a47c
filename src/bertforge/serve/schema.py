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
    """A /predict body -> the request, or an `ApiError` that names what is wrong: 400 for a body that is not JSON,
    422 for JSON that is not a request (as TEI, whose JSON reader answers so)."""
    if not body.strip():
        raise ApiError("Empty", f"the request body is empty; send JSON like {json.dumps(contract.example)}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(
            "Validation",
            f"the request body is not UTF-8: byte {body[exc.start]:#04x} at offset {exc.start}",
            status=400,
        ) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ApiError("Validation", f"the request body is not JSON: {exc.msg} ({where})", status=400) from None
    except RecursionError:
        raise ApiError(
            "Validation", "the request body is not JSON this server reads: nested too deeply", status=400
        ) from None
    try:
        request = contract.parse(data)
    except RequestError as exc:
        raise ApiError(exc.error_type, str(exc)) from None
    if not request.inputs:
        raise ApiError("Validation", "no inputs: the batch is empty")  # TEI: 422, as for any body it cannot read
    if len(request.inputs) > max_client_batch_size:
        raise ApiError(
            "Validation",
            f"batch size {len(request.inputs)} > maximum allowed batch size {max_client_batch_size}",
            status=413,
        )
    return request


def info(predictor: Predictor, options: ServeOptions, model_id: str) -> dict[str, Any]:
    """`GET /info`: what is served and under which limits: TEI's fields (`model_id`, `model_dtype`, `model_type`,
    `max_input_length`, `max_batch_tokens`, `max_batch_requests`, ...) and ours."""
    contract, settings = serving(predictor), predictor.settings
    about: dict[str, Any] = {"model_id": model_id, "task": predictor.task.kind} | contract.about(settings)
    return about | {
        "served_model_name": model_id,
        "model_sha": None,
        "model_dtype": getattr(predictor.backend, "dtype", "float32"),
        "max_input_length": predictor.max_seq_length,
        "long_inputs": contract.long_inputs(settings, predictor.max_seq_length),
        "request_example": contract.example,
        "form": contract.form(settings),
        "backend": type(predictor.backend).__name__.removesuffix("Backend").lower(),
        "version": __version__,
        "batching": options.batching,
        "auto_truncate": options.auto_truncate,
        "max_batch_tokens": options.max_batch_tokens,
        "max_batch_size": options.max_batch_size,
        "max_batch_requests": options.max_batch_size,  # TEI counts requests; ours counts their inputs, a bound
        "max_wait_ms": options.max_wait_ms,
        "max_client_batch_size": options.max_client_batch_size,
        "max_concurrent_requests": options.max_concurrent_requests,
        "max_body_bytes": options.max_body_bytes,
        "tokenization_workers": 1,
    }
