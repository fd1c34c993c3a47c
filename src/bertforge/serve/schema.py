"""The HTTP contract of `POST /predict` and `GET /info`, per task (`SHAPES`). Bodies are checked by hand, not
by pydantic, so that every malformed body gets TEI's error body with a message naming the field; the OpenAPI
document shows the same shapes (`REQUEST_SCHEMAS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertforge import __version__
from bertforge.inference import Predictor
from bertforge.serve.errors import ApiError
from bertforge.serve.options import ServeOptions

SHAPES = """Classifiers take and give TEI's shapes exactly: `{"inputs": "text" | ["text", "text_b"] |
[["a"], ["b", "c"]], "truncate": bool, "raw_scores": bool}` -> `[{"label", "score"}]` sorted by score, or a list
of those for a batch (a bare list of two strings is one pair, as in TEI; a batch is a list of lists). NER takes
`{"inputs": text | [texts]}` -> entities `[{"entity_group", "word", "start", "end", "score"}]` (a list of those
for a batch); QA takes `{"question", "context"}` or a list of them -> `{"answer", "score", "start", "end"}` (or a
list). Errors: `{"error", "error_type"}` with TEI's status codes."""

EXAMPLES = {
    "classification": {"inputs": "What a wonderful film!", "truncate": False},
    "ner": {"inputs": "Ada Lovelace was born in London."},
    "qa": {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London."},
}
REGRESSION_LABEL = "LABEL_0"  # a one-output model's label, as TEI and transformers name it

_TEXT = {"type": "string", "minLength": 1}
_FLAG = {"type": "boolean", "default": False}
_TRUNCATE = {
    "type": ["boolean", "null"],
    "default": False,
    "description": "cut inputs longer than the model takes, instead of answering 422",
}
_QA_ITEM = {
    "type": "object",
    "required": ["question", "context"],
    "additionalProperties": False,
    "properties": {"question": _TEXT, "context": _TEXT},
}
REQUEST_SCHEMAS = {
    "classification": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {
                "oneOf": [
                    {"description": "one text", **_TEXT},
                    {
                        "description": "one text [text] or pair [text, text_b]",
                        "type": "array",
                        "items": _TEXT,
                        "minItems": 1,
                        "maxItems": 2,
                    },
                    {
                        "description": "a batch of [text] and [text, text_b]",
                        "type": "array",
                        "items": {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 2},
                    },
                ]
            },  # fmt: skip
            "truncate": _TRUNCATE,
            "raw_scores": {**_FLAG, "description": "logits instead of probabilities"},
            "truncation_direction": {"type": "string", "enum": ["Right", "right"], "default": "Right"},
        },
        "example": EXAMPLES["classification"],
    },
    "ner": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {
                "oneOf": [
                    {"description": "one text", **_TEXT},
                    {"description": "a batch of texts", "type": "array", "items": _TEXT},
                ]
            },  # fmt: skip
            "truncate": _TRUNCATE,
        },
        "example": EXAMPLES["ner"],
    },
    "qa": {
        "oneOf": [{"description": "one question", **_QA_ITEM}, {"type": "array", "items": _QA_ITEM}],
        "example": EXAMPLES["qa"],
    },
}


@dataclass
class PredictRequest:
    inputs: list  # raw inputs as `Predictor.example` takes them: a text, a (text, text_b) pair, a QA record
    single: bool  # one input, not in a batch: the response is its result rather than a list of one
    truncate: bool = False
    raw_scores: bool = False


def parse_request(body: bytes, kind: str, max_client_batch_size: int) -> PredictRequest:
    """A /predict body -> the request, or an `ApiError` that names what is wrong."""
    if not body.strip():
        raise ApiError("empty", f"the request body is empty; send JSON like {json.dumps(EXAMPLES[kind])}")
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
    request = _PARSERS[kind](data)
    if not request.inputs:
        raise ApiError("empty", "no inputs: the batch is empty")
    if len(request.inputs) > max_client_batch_size:
        raise ApiError(
            "validation",
            f"batch size {len(request.inputs)} > maximum allowed batch size {max_client_batch_size}",
            status=413,
        )
    return request


def _fields(data: Any, required: tuple[str, ...], optional: tuple[str, ...] = (), where: str = "the request body"):
    """`data` as a JSON object with these fields and no others."""
    if not isinstance(data, dict):
        raise ApiError("validation", f"{where} must be a JSON object, not {_type(data)}")
    unknown = sorted(set(data) - {*required, *optional})
    if unknown:
        names = ", ".join(required + optional)
        raise ApiError("validation", f"{where}: unknown field {unknown[0]!r}; the fields are {names}")
    for name in required:
        if name not in data:
            raise ApiError("validation", f"{where}: missing field {name!r}")
    return data


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError("validation", f"{name!r} must be true or false, not {json.dumps(value)[:40]}")
    return bool(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ApiError("validation", f"{where} must be a string, not {_type(value)}")
    if not value.strip():
        raise ApiError("empty", f"{where} is an empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes can spell half of a character
        raise ApiError("validation", f"{where} is not text: a lone surrogate at character {exc.start}") from None
    return value


def _sequence(value: Any, where: str) -> str | tuple[str, str]:
    """[text] or [text, text_b] -> a text or a pair."""
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        got = f"a list of {len(value)}" if isinstance(value, list) else _type(value)
        raise ApiError("validation", f"{where} must be [text] or [text, text_b], not {got}")
    texts = [_text(t, f"{where}[{i}]") for i, t in enumerate(value)]
    return texts[0] if len(texts) == 1 else (texts[0], texts[1])


def _classification(data: Any) -> PredictRequest:
    body = _fields(data, ("inputs",), ("truncate", "raw_scores", "truncation_direction"))
    direction = body.get("truncation_direction", "Right")
    if direction not in ("Right", "right"):
        raise ApiError("validation", f'truncation_direction {json.dumps(direction)[:40]}: only "Right" is supported')
    inputs = body["inputs"]
    if isinstance(inputs, str):
        batch, single = [_text(inputs, "'inputs'")], True
    elif isinstance(inputs, list) and inputs and isinstance(inputs[0], str):  # one text or pair, as in TEI
        batch, single = [_sequence(inputs, "'inputs'")], True
    elif isinstance(inputs, list):
        batch, single = [_sequence(item, f"'inputs'[{i}]") for i, item in enumerate(inputs)], False
    else:
        raise ApiError(
            "validation",
            f"'inputs' must be a text, a pair [text, text_b] or a batch [[text], [text, text_b], ...], "
            f"not {_type(inputs)}",
        )
    return PredictRequest(batch, single, _flag(body, "truncate"), _flag(body, "raw_scores"))


def _ner(data: Any) -> PredictRequest:
    body = _fields(data, ("inputs",), ("truncate",))
    inputs = body["inputs"]
    if isinstance(inputs, str):
        return PredictRequest([_text(inputs, "'inputs'")], True, _flag(body, "truncate"))
    if not isinstance(inputs, list):
        raise ApiError("validation", f"'inputs' must be a text or a list of texts, not {_type(inputs)}")
    return PredictRequest([_text(t, f"'inputs'[{i}]") for i, t in enumerate(inputs)], False, _flag(body, "truncate"))


def _qa(data: Any) -> PredictRequest:
    """Questions longer than the task's max_query_length are cut, as in training (so `truncate` is implied)."""

    def item(value: Any, where: str) -> dict[str, str]:
        record = _fields(value, ("question", "context"), where=where)
        return {name: _text(record[name], f"{where}: {name!r}") for name in ("question", "context")}

    if isinstance(data, list):
        return PredictRequest([item(v, f"item {i}") for i, v in enumerate(data)], False, truncate=True)
    if not isinstance(data, dict):
        raise ApiError(
            "validation", f'the request body must be {{"question", "context"}} or a list of them, not {_type(data)}'
        )
    return PredictRequest([item(data, "the request body")], True, truncate=True)


_PARSERS = {"classification": _classification, "ner": _ner, "qa": _qa}


def respond(predictor: Predictor, request: PredictRequest, results: list, outputs: list) -> Any:
    """The response body: each input's result as users of TEI and Hugging Face pipelines know it."""
    task = predictor.task
    if task.kind == "classification":
        labels = predictor.settings.labels
        if labels is None:  # regression: the raw score, under TEI's name for a one-output model's label
            items = [[{"label": REGRESSION_LABEL, "score": r["score"]}] for r in results]
        elif request.raw_scores:  # classification: features are the examples, one each
            items = [_ranked(labels, out["logits"]) for out in outputs]
        else:
            items = [task.present(r) for r in results]
    else:
        items = [task.present(r) for r in results]
    return items[0] if request.single else items


def _ranked(labels: list[str], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"label": labels[j], "score": float(scores[j])} for j in np.argsort(-scores, kind="stable")]


def long_inputs(predictor: Predictor) -> str:
    """What happens to an input longer than the model takes, for /info."""
    n, task = predictor.max_seq_length, predictor.settings.task
    if predictor.task.kind == "qa":
        return (
            f"contexts of any length are read in overlapping windows of {n} tokens; questions longer than "
            f"{task.get('max_query_length', 64)} word-pieces are cut"
        )
    if predictor.task.kind == "ner" and not task.get("truncate"):
        return f"texts of any length are read in overlapping windows of {n} tokens"
    return f'inputs longer than {n} tokens are refused (422) unless the request says "truncate": true'


def info(predictor: Predictor, options: ServeOptions, model_id: str) -> dict[str, Any]:
    """`GET /info`: what is served and under which limits (TEI's names where TEI has the setting)."""
    kind, settings = predictor.task.kind, predictor.settings
    about: dict[str, Any] = {"model_id": model_id, "task": kind}
    if kind == "classification":
        about |= {"regression": settings.labels is None, "labels": settings.labels or [REGRESSION_LABEL]}
    elif kind == "ner":
        about |= {
            "labels": settings.labels,
            "entity_types": sorted({label[2:] for label in settings.labels if label != "O"}),
        }
    else:
        about |= {"version_2_with_negative": bool(settings.task.get("version_2_with_negative"))}
    return about | {
        "max_input_length": predictor.max_seq_length,
        "long_inputs": long_inputs(predictor),
        "request_example": EXAMPLES[kind],
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
