"""What a task's HTTP contract is made of (`Serving`), and the checks its request parsers share. A task owns how
a `/predict` body becomes its raw inputs and how its results become the response (`bertforge serve` knows no
task); the bodies are checked by hand, not by a schema library, so that every malformed body gets an error that
names the field, with TEI's error type."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bertforge.errors import BertforgeError


class RequestError(BertforgeError):
    """A request body this task cannot take: TEI's `error_type` ("validation", "empty") and the message."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


@dataclass
class PredictRequest:
    inputs: list  # raw inputs as the task's `example` takes them: a text, a (text, text_b) pair, a record
    single: bool  # one input, not in a batch: the response is its result rather than a list of one
    truncate: bool = False
    raw_scores: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)  # the task's own options of this request


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
    # The demo page's form: the input fields ({"name", "label", "multiline"}) and how results are drawn
    # ("labels", "entities", "answer"; anything else is shown as JSON).
    form: dict[str, Any]


def fields(data: Any, required: tuple[str, ...], optional: tuple[str, ...] = (), where: str = "the request body"):
    """`data` as a JSON object with these fields and no others."""
    if not isinstance(data, dict):
        raise RequestError("validation", f"{where} must be a JSON object, not {type_name(data)}")
    unknown = sorted(set(data) - {*required, *optional})
    if unknown:
        names = ", ".join(required + optional)
        raise RequestError("validation", f"{where}: unknown field {unknown[0]!r}; the fields are {names}")
    for name in required:
        if name not in data:
            raise RequestError("validation", f"{where}: missing field {name!r}")
    return data


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError("validation", f"{name!r} must be true or false, not {json.dumps(value)[:40]}")
    return bool(value)


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError("validation", f"{where} must be a string, not {type_name(value)}")
    if not value.strip():
        raise RequestError("empty", f"{where} is an empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes can spell half of a character
        raise RequestError("validation", f"{where} is not text: a lone surrogate at character {exc.start}") from None
    return value


TEXT_SCHEMA = {"type": "string", "minLength": 1}
TRUNCATE_SCHEMA = {
    "type": ["boolean", "null"],
    "default": False,
    "description": "cut inputs longer than the model takes, instead of answering 422",
}
