"""Named-entity recognition over HTTP: `{"inputs": text | [texts], "truncate"}` -> entities `[{"entity_group",
"word", "start", "end", "score"}]` (a list of those for a batch), as Hugging Face's token-classification pipeline
gives them with an aggregation strategy."""

from __future__ import annotations

import json
from typing import Any

from bertforge.tasks.requests import (
    PARAMETERS_SCHEMA,
    TEXT_SCHEMA,
    TRUNCATE_SCHEMA,
    PredictRequest,
    RequestError,
    Serving,
    fields,
    optional_flag,
    parameters,
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
    body = fields(data, ("inputs",), ("truncate", "parameters"))
    inputs, params = body["inputs"], parameters(body)
    if params is not None:
        strategy = params.get("aggregation_strategy")
        if strategy not in (None, "simple"):
            raise RequestError(
                "Validation",
                f"'parameters'.aggregation_strategy {json.dumps(strategy)[:40]}: this server gives whole entities, "
                'as "simple" does; per-token or per-word strategies are not served',
            )
        ignored = params.get("ignore_labels")
        if ignored is not None and not (isinstance(ignored, list) and all(isinstance(x, str) for x in ignored)):
            raise RequestError("Validation", "'parameters'.ignore_labels must be a list of label names")
    truncate = optional_flag(body, "truncate")
    if isinstance(inputs, str):
        return PredictRequest([text(inputs, "'inputs'")], True, truncate, parameters=params)
    if not isinstance(inputs, list):
        raise RequestError("Validation", f"'inputs' must be a text or a list of texts, not {type_name(inputs)}")
    return PredictRequest([text(t, f"'inputs'[{i}]") for i, t in enumerate(inputs)], False, truncate, parameters=params)


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    """The entities of each input; with "parameters" (the Inference API's shape), those of the types in
    `ignore_labels` left out (the pipeline's default, ["O"], leaves out nothing here: "O" is no entity)."""
    ignored = set((request.parameters or {}).get("ignore_labels") or ())
    items = [[e for e in r.entities if e["entity_group"] not in ignored] for r in results]
    return items[0] if request.single else items


def about(settings) -> dict[str, Any]:
    types = sorted({label[2:] for label in settings.labels if label != "O"})
    labels = {"id2label": {str(i): name for i, name in enumerate(settings.labels)},
              "label2id": {name: i for i, name in enumerate(settings.labels)}}  # fmt: skip
    return {"labels": settings.labels, "entity_types": types, "model_type": {"token_classifier": labels}}


def long_inputs(settings, n: int) -> str:
    if settings.task.truncate:
        return f'inputs longer than {n} tokens are refused (422) unless "truncate": true'
    return f"texts of any length are read in overlapping windows of {n} tokens"


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "oneOf": [
                    {"description": "one text", **TEXT_SCHEMA},
                    {"description": "a batch of texts", "type": "array", "items": TEXT_SCHEMA},
                ]
            },  # fmt: skip
            "truncate": TRUNCATE_SCHEMA,
            "parameters": PARAMETERS_SCHEMA
            | {"properties": {"aggregation_strategy": {"enum": ["simple"]}, "ignore_labels": {"type": "array"}}},
        },
        "example": EXAMPLE,
    },
    response_schema={"oneOf": [_ENTITIES, {"type": "array", "items": _ENTITIES, "description": "a batch"}]},
    parse=parse,
    respond=respond,
    about=about,
    long_inputs=long_inputs,
    form=lambda settings: {
        "inputs": [{"name": "text", "label": "Text", "multiline": True}],
        "result": "entities",
        "request": "inputs",
    },  # fmt: skip
    summary='{"inputs": "text"} or a batch {"inputs": ["text", ...]}; answered with the entities found in each '
    "text (entity_group, word, start, end, score)",
)
