"""Named-entity recognition over HTTP: `{"inputs": text | [texts], "truncate"}` -> entities `[{"entity_group",
"word", "start", "end", "score"}]` (a list of those for a batch), as Hugging Face's token-classification pipeline
gives them with an aggregation strategy."""

from __future__ import annotations

from typing import Any

from bertforge.tasks.requests import (
    TEXT_SCHEMA,
    TRUNCATE_SCHEMA,
    PredictRequest,
    RequestError,
    Serving,
    fields,
    flag,
    text,
    type_name,
)

EXAMPLE = {"inputs": "Ada Lovelace was born in London."}

_ENTITY = {
    "type": "object",
    "required": ["entity_group", "word", "start", "end", "score"],
    "properties": {
        "entity_group": {"type": "string"},
        "word": {"type": "string", "description": "the entity's text: inputs[start:end]"},
        "start": {"type": "integer", "description": "character offset into the input"},
        "end": {"type": "integer"},
        "score": {"type": "number", "description": "mean probability of the entity's tags"},
    },
}
_ENTITIES = {"type": "array", "items": _ENTITY}


def parse(data: Any) -> PredictRequest:
    body = fields(data, ("inputs",), ("truncate",))
    inputs = body["inputs"]
    if isinstance(inputs, str):
        return PredictRequest([text(inputs, "'inputs'")], True, flag(body, "truncate"))
    if not isinstance(inputs, list):
        raise RequestError("validation", f"'inputs' must be a text or a list of texts, not {type_name(inputs)}")
    return PredictRequest([text(t, f"'inputs'[{i}]") for i, t in enumerate(inputs)], False, flag(body, "truncate"))


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    items = [r.entities for r in results]
    return items[0] if request.single else items


def about(settings) -> dict[str, Any]:
    types = sorted({label[2:] for label in settings.labels if label != "O"})
    return {"labels": settings.labels, "entity_types": types}


def long_inputs(settings, n: int) -> str:
    if settings.task.truncate:
        return f'inputs longer than {n} tokens are refused (422) unless "truncate": true'
    return f"texts of any length are read in overlapping windows of {n} tokens"


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {
                "oneOf": [
                    {"description": "one text", **TEXT_SCHEMA},
                    {"description": "a batch of texts", "type": "array", "items": TEXT_SCHEMA},
                ]
            },  # fmt: skip
            "truncate": TRUNCATE_SCHEMA,
        },
        "example": EXAMPLE,
    },
    response_schema={"oneOf": [_ENTITIES, {"type": "array", "items": _ENTITIES, "description": "a batch"}]},
    parse=parse,
    respond=respond,
    about=about,
    long_inputs=long_inputs,
    form={"inputs": [{"name": "text", "label": "Text"}], "result": "entities"},
)
