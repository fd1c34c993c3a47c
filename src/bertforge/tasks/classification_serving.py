"""Classification over HTTP, exactly as text-embeddings-inference's `/predict`: `{"inputs": "text" | ["text",
"text_b"] | [["a"], ["b", "c"]], "truncate", "raw_scores"}` -> `[{"label", "score"}]` sorted by score, or a list
of those for a batch (a bare list of two strings is one pair, as in TEI; a batch is a list of lists)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bertforge.tasks.requests import (
    DIRECTION_SCHEMA,
    PARAMETERS_SCHEMA,
    TEXT_SCHEMA,
    TRUNCATE_SCHEMA,
    PredictRequest,
    RequestError,
    Serving,
    fields,
    flag,
    optional_flag,
    parameters,
    text,
    top_k,
    truncation_left,
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
        raise RequestError("Validation", f"{where} must be [text] or [text, text_b], not {got}")
    texts = [text(t, f"{where}[{i}]") for i, t in enumerate(value)]
    return texts[0] if len(texts) == 1 else (texts[0], texts[1])


def parse(data: Any) -> PredictRequest:
    body = fields(data, ("inputs",), ("truncate", "raw_scores", "truncation_direction", "parameters"))
    inputs = body["inputs"]
    if isinstance(inputs, str):
        batch, single = [text(inputs, "'inputs'")], True
    elif isinstance(inputs, list) and inputs and isinstance(inputs[0], str):  # one text or pair, as in TEI
        batch, single = [_sequence(inputs, "'inputs'")], True
    elif isinstance(inputs, list):
        batch, single = [_sequence(item, f"'inputs'[{i}]") for i, item in enumerate(inputs)], False
    else:
        raise RequestError(
            "Validation",
            f"'inputs' must be a text, a pair [text, text_b] or a batch [[text], [text, text_b], ...], "
            f"not {type_name(inputs)}",
        )
    params = parameters(body)
    if params is not None:
        top_k(params)
        if params.get("function_to_apply") not in (None, *_FUNCTIONS):
            given = json.dumps(params["function_to_apply"])[:40]
            raise RequestError("Validation", f"'parameters'.function_to_apply {given}: expected one of {_FUNCTIONS}")
    if truncation_left(body):
        batch = [_keeping_end(item) for item in batch]
    return PredictRequest(batch, single, optional_flag(body, "truncate"), flag(body, "raw_scores"), params)


_FUNCTIONS = ("softmax", "sigmoid", "none")  # the text-classification pipeline's function_to_apply


def _keeping_end(item: str | tuple[str, str]) -> dict[str, Any]:
    """A text or pair as a record that, too long, loses its start (TEI's truncation_direction "Left")."""
    text_a, text_b = (item, None) if isinstance(item, str) else item
    return {"text": text_a, "text_b": text_b, "keep_end": True}


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    """Each input's labels by score (probabilities, or logits with raw_scores); a regression's score under
    TEI's name for a one-output model's label. With "parameters" (the Inference API's shape): a list of lists
    even for one input, `top_k` labels, `function_to_apply` over the logits."""
    labels = settings.labels
    params = request.parameters
    function = (params or {}).get("function_to_apply")
    if labels is None:
        items = [[{"label": REGRESSION_LABEL, "score": r["score"]}] for r in results]
        if function == "sigmoid":
            items = [[{"label": REGRESSION_LABEL, "score": float(_sigmoid(r["score"]))}] for r in results]
    elif request.raw_scores or function == "none":  # features are the examples, one each
        items = [_ranked(labels, out["logits"]) for out in outputs]
    elif function == "sigmoid":
        items = [_ranked(labels, _sigmoid(out["logits"].astype(np.float64))) for out in outputs]
    else:
        items = results
    if params is None:
        return items[0] if request.single else items
    k = top_k(params)
    return [item[:k] for item in items]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _ranked(labels: list[str], scores: np.ndarray) -> list[dict[str, Any]]:
    return [{"label": labels[j], "score": float(scores[j])} for j in np.argsort(-scores, kind="stable")]


def form(settings) -> dict[str, Any]:
    """One text box, and a second one for a model trained on pairs (or whose folder does not say)."""
    inputs = [{"name": "text", "label": "Text", "multiline": True}]
    if settings.task is None or settings.task.pairs is not False:
        inputs.append({"name": "text_b", "label": "Second text (sentence-pair models)", "multiline": True})
    return {"inputs": inputs, "result": "labels", "request": "inputs"}


def id2label(labels: list[str]) -> dict[str, Any]:
    """TEI's /info `model_type.classifier`: the label names by id and back (string ids, as in config.json)."""
    return {"id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)}}  # fmt: skip


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "type": "object",
        "required": ["inputs"],
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
            "truncation_direction": DIRECTION_SCHEMA,
            "parameters": PARAMETERS_SCHEMA
            | {
                "properties": {
                    "top_k": {"type": "integer", "minimum": 1},
                    "function_to_apply": {"enum": list(_FUNCTIONS)},
                }
            },
        },
        "example": EXAMPLE,
    },
    response_schema={
        "oneOf": [
            _RANKED,
            {"type": "array", "items": _RANKED, "description": "a batch, or any request with 'parameters'"},
        ]
    },  # fmt: skip
    parse=parse,
    respond=respond,
    about=lambda settings: {
        "regression": settings.labels is None,
        "labels": settings.labels or [REGRESSION_LABEL],
        "model_type": {"classifier": id2label(settings.labels or [REGRESSION_LABEL])},
    },
    long_inputs=lambda settings, n: f'inputs longer than {n} tokens are refused (422) unless "truncate": true',
    form=form,
    summary='{"inputs": "text"}, a pair {"inputs": ["text", "text_b"]} or a batch {"inputs": [["text"], ["text", '
    '"text_b"]]}; "truncate", "raw_scores", "truncation_direction" as in text-embeddings-inference; answered '
    "with every label and its score, most probable first",
)
