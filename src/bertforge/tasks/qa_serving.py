"""Extractive question answering over HTTP: `{"question", "context"}` or a list of them -> `{"answer", "score",
"start", "end"}` (or a list), as Hugging Face's question-answering pipeline gives them. Contexts of any length are
read in windows; questions longer than `max_query_length` word-pieces are cut, as in training."""

from __future__ import annotations

from typing import Any

from bertforge.tasks.requests import TEXT_SCHEMA, PredictRequest, RequestError, Serving, fields, text, type_name

EXAMPLE = {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London."}

_ITEM = {
    "type": "object",
    "required": ["question", "context"],
    "additionalProperties": False,
    "properties": {"question": TEXT_SCHEMA, "context": TEXT_SCHEMA},
}
_ANSWER = {
    "type": "object",
    "required": ["answer", "score", "start", "end"],
    "properties": {
        "answer": {"type": "string", "description": "context[start:end]; empty for no answer (SQuAD v2.0 models)"},
        "score": {"type": "number"},
        "start": {"type": "integer"},
        "end": {"type": "integer"},
    },
}


def parse(data: Any) -> PredictRequest:
    def item(value: Any, where: str) -> dict[str, str]:
        record = fields(value, ("question", "context"), where=where)
        return {name: text(record[name], f"{where}: {name!r}") for name in ("question", "context")}

    if isinstance(data, list):
        return PredictRequest([item(v, f"item {i}") for i, v in enumerate(data)], False, truncate=True)
    if not isinstance(data, dict):
        raise RequestError(
            "validation", f'the request body must be {{"question", "context"}} or a list of them, not {type_name(data)}'
        )
    return PredictRequest([item(data, "the request body")], True, truncate=True)


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    items = [r.present() for r in results]
    return items[0] if request.single else items


def long_inputs(settings, n: int) -> str:
    return (
        f"contexts of any length are read in overlapping windows of {n} tokens; questions longer than "
        f"{settings.task.max_query_length} word-pieces are cut"
    )


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "oneOf": [{"description": "one question", **_ITEM}, {"type": "array", "items": _ITEM}],
        "example": EXAMPLE,
    },
    response_schema={"oneOf": [_ANSWER, {"type": "array", "items": _ANSWER, "description": "a batch"}]},
    parse=parse,
    respond=respond,
    about=lambda settings: {"version_2_with_negative": bool(settings.task.version_2_with_negative)},
    long_inputs=long_inputs,
    form={
        "inputs": [
            {"name": "question", "label": "Question"},
            {"name": "context", "label": "Context", "multiline": True},
        ],
        "result": "answer",
    },  # fmt: skip
)
