"""What a task's HTTP contract is made of (`Serving`), and the checks its request parsers share. A task owns how
a `/predict` body becomes its raw inputs and how its results become the response (`bertforge serve` knows no
task); the bodies are checked by hand, not by a schema library, so that every malformed body gets an error that
names the field, with TEI's error type."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertforge.errors import BertforgeError

log = logging.getLogger("bertforge")


class RequestError(BertforgeError):
    """A request body this task cannot take: TEI's `error_type` ("Validation", "Empty"; the names and their statuses
    are `bertforge.serve.errors.STATUS`) and the message."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


@dataclass
class PredictRequest:
    inputs: list  # raw inputs as the task's `example` takes them: a text, a (text, text_b) pair, a record
    single: bool  # one input, not in a batch: the response is its result rather than a list of one
    truncate: bool | None = None  # None: the server's --auto-truncate decides
    raw_scores: bool = False
    # The body's "parameters": Hugging Face's Inference API shape (`InferenceClient`), answered in its pipeline's
    # shapes, with the options that mean something for this model honoured. None: TEI's shape.
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Serving:
    """A task's `/predict` contract, and what `/info`, `/docs` and the demo page show of it."""

    example: dict[str, Any]  # a request body, shown in /info and /docs
    request_schema: dict[str, Any]  # JSON Schema of the request body (the OpenAPI document)
    response_schema: dict[str, Any]  # JSON Schema of a 200 response
    # The parsed JSON body -> the request; raises `RequestError` naming what is wrong.
    parse: Callable[[Any], PredictRequest]
    # (settings, request, results, outputs) -> the response body; results are the task's, in input order.
    respond: Callable[[Any, PredictRequest, list, list], Any]
    # The task's part of /info (labels, entity types, ...), from the model's settings.
    about: Callable[[Any], dict[str, Any]]
    # (settings, max_seq_length) -> what happens to an input longer than the model takes, for /info.
    long_inputs: Callable[[Any, int], str]
    # The model's settings -> the demo page's form: the input fields ({"name", "label", "multiline", "lines"}),
    # how results are drawn ("result": "labels", "entities", "answer", "choices"; the page shows anything else as
    # JSON) and "request": how the fields make a body ("inputs": {"inputs": first field, or [fields] when the
    # later ones are filled}; "fields": {"inputs": {field: value}}; "body": {field: value}).
    form: Callable[[Any], dict[str, Any]]
    # A plain-text line on what a request holds, for the OpenAPI document.
    summary: str = ""


def fields(data: Any, required: tuple[str, ...], optional: tuple[str, ...] = (), where: str = "the request body"):
    """`data` as a JSON object with these fields; others are ignored, as TEI does (logged at debug level)."""
    if not isinstance(data, dict):
        raise RequestError("Validation", f"{where} must be a JSON object, not {type_name(data)}")
    unknown = sorted(set(data) - {*required, *optional})
    if unknown:
        log.debug("%s: ignored unknown field(s) %s", where, ", ".join(map(repr, unknown)))
    for name in required:
        if name not in data:
            raise RequestError("Validation", f"{where}: missing field {name!r}")
    return data


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def flag(data: dict, name: str) -> bool:
    return bool(optional_flag(data, name))


def optional_flag(data: dict, name: str) -> bool | None:
    """A boolean field; None when absent or null."""
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError("Validation", f"{name!r} must be true or false, not {json.dumps(value)[:40]}")
    return value


def truncation_left(data: dict) -> bool:
    """TEI's `truncation_direction`: "Right" (the default: keep the start) or "Left" (keep the end), either case."""
    direction = data.get("truncation_direction")
    if direction is None or direction in ("Right", "right"):
        return False
    if direction in ("Left", "left"):
        return True
    raise RequestError("Validation", f'truncation_direction {json.dumps(direction)[:40]}: expected "Right" or "Left"')


def parameters(data: dict) -> dict[str, Any] | None:
    """The body's "parameters" object (Hugging Face's Inference API shape); None when absent."""
    value = data.get("parameters")
    if value is not None and not isinstance(value, dict):
        raise RequestError("Validation", f"'parameters' must be a JSON object, not {type_name(value)}")
    if value is None:
        return None if "parameters" not in data else {}
    return value


def top_k(params: dict[str, Any], name: str = "top_k") -> int | None:
    """A positive integer option of "parameters", or None."""
    value = params.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        given = json.dumps(value)[:40]
        raise RequestError("Validation", f"'parameters'.{name} must be a positive integer, not {given}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError("Validation", f"{where} must be a string, not {type_name(value)}")
    if not value.strip():
        raise RequestError("Empty", f"{where} is an empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes can spell half of a character
        raise RequestError("Validation", f"{where} is not text: a lone surrogate at character {exc.start}") from None
    return value


TEXT_SCHEMA = {"type": "string", "minLength": 1}
TRUNCATE_SCHEMA = {
    "type": ["boolean", "null"],
    "default": None,
    "description": "cut inputs longer than the model takes, instead of answering 422 (null: the server's "
    "--auto-truncate)",
}
DIRECTION_SCHEMA = {
    "type": "string",
    "enum": ["Right", "right", "Left", "left"],
    "default": "Right",
    "description": "which end a truncated input loses: Right keeps the start, Left the end",
}
PARAMETERS_SCHEMA = {
    "type": "object",
    "description": "Hugging Face's Inference API options (InferenceClient); the answer then takes the pipeline's shape",
}
