"""Classification over HTTP, exactly as text-embeddings-inference's `/predict`: `{"inputs": "text" | ["text",
"text_b"] | [["a"], ["b", "c"]], "truncate", "raw_scores"}` -> `[{"label", "score"}]` sorted by score, or a list
of those for a batch (a bare list of two strings is one pair, as in TEI; a batch is a list of lists)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

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

REGRESSION_LABEL = "LABEL_0"  # a one-output model's label, as TEI and transformers name it
EXAMPLE = {"inputs": "What a wonderful film!", "truncate": False}

_SCORED = {
    "type": "object",
    "required": ["label", "score"],
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
}
_RANKED = {"type": "array", "items": _SCORED, "description": "every label, most probable first"}


def _sequence(value: Any, where: str) -> str | tuple[str, str]:
    """[text] or [text, text_b] -> a text or a pair."""
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        got = f"a list of {len(value)}" if isinstance(value, list) else type_name(value)
        raise RequestError("validation", f"{where} must be [text] or [text, text_b], not {got}")
    texts = [text(t, f"{where}[{i}]") for i, t in enumerate(value)]
    return texts[0] if len(texts) == 1 else (texts[0], texts[1])


def parse(data: Any) -> PredictRequest:
    body = fields(data, ("inputs",), ("truncate", "raw_scores", "truncation_direction"))
    direction = body.get("truncation_direction", "Right")
    if direction not in ("Right", "right"):
        given = json.dumps(direction)[:40]
        raise RequestError("validation", f'truncation_direction {given}: only "Right" is supported')
    inputs = body["inputs"]
    if isinstance(inputs, str):
        batch, single = [text(inputs, "'inputs'")], True
    elif isinstance(inputs, list) and inputs and isinstance(inputs[0], str):  # one text or pair, as in TEI
        batch, single = [_sequence(inputs, "'inputs'")], True
    elif isinstance(inputs, list):
        batch, single = [_sequence(item, f"'inputs'[{i}]") for i, item in enumerate(inputs)], False
    else:
        raise RequestError(
            "validation",
            f"'inputs' must be a text, a pair [text, text_b] or a batch [[text], [text, text_b], ...], "
            f"not {type_name(inputs)}",
        )
    return PredictRequest(batch, single, flag(body, "truncate"), flag(body, "raw_scores"))


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    """Each input's labels by score (probabilities, or logits with raw_scores); a regression's score under
    TEI's name for a one-output model's label."""
    labels = settings.labels
    if labels is None:
        items = [[{"label": REGRESSION_LABEL, "score": r["score"]}] for r in results]
    elif request.raw_scores:  # features are the examples, one each
        items = [_ranked(labels, out["logits"]) for out in outputs]
    else:
        items = results
    return items[0] if request.single else items


def _ranked(labels: list[str], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"label": labels[j], "score": float(scores[j])} for j in np.argsort(-scores, kind="stable")]


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
                    {
                        "description": "one text [text] or pair [text, text_b]",
                        "type": "array",
                        "items": TEXT_SCHEMA,
                        "minItems": 1,
                        "maxItems": 2,
                    },
                    {
                        "description": "a batch of [text] and [text, text_b]",
                        "type": "array",
                        "items": {"type": "array", "items": TEXT_SCHEMA, "minItems": 1, "maxItems": 2},
                    },
                ]
            },  # fmt: skip
            "truncate": TRUNCATE_SCHEMA,
            "raw_scores": {"type": "boolean", "default": False, "description": "logits instead of probabilities"},
            "truncation_direction": {"type": "string", "enum": ["Right", "right"], "default": "Right"},
        },
        "example": EXAMPLE,
    },
    response_schema={"oneOf": [_RANKED, {"type": "array", "items": _RANKED, "description": "a batch"}]},
    parse=parse,
    respond=respond,
    about=lambda settings: {"regression": settings.labels is None, "labels": settings.labels or [REGRESSION_LABEL]},
    long_inputs=lambda settings, n: f'inputs longer than {n} tokens are refused (422) unless "truncate": true',
    form={
        "inputs": [{"name": "text", "label": "Text"}, {"name": "text_b", "label": "Second text (optional)"}],
        "result": "labels",
    },  # fmt: skip
)
