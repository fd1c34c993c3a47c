"""Extractive question answering over HTTP: `{"question", "context"}` or a list of them -> `{"answer", "score",
"start", "end"}` (or a list), as Hugging Face's question-answering pipeline gives them. Contexts of any length are
read in windows; questions longer than `max_query_length` word-pieces are cut, as in training."""

from __future__ import annotations

from typing import Any

from bertforge.tasks.requests import (
    PARAMETERS_SCHEMA,
    TEXT_SCHEMA,
    PredictRequest,
    RequestError,
    Serving,
    fields,
    optional_flag,
    parameters,
    text,
    top_k,
    type_name,
)

EXAMPLE = {"question": "Where was Ada born?", "context": "Ada Lovelace was born in London."}

_ITEM = {
    "type": "object",
    "required": ["question", "context"],
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
    """`{"question", "context"}` or a list of them; or Hugging Face's Inference API shape, `{"inputs": {"question",
    "context"} (or a list), "parameters": {...}}`."""

    def item(value: Any, where: str) -> dict[str, str]:
        record = fields(value, ("question", "context"), where=where)
        return {name: text(record[name], f"{where}: {name!r}") for name in ("question", "context")}

    params = None
    if isinstance(data, dict) and "inputs" in data and "question" not in data:
        body = fields(data, ("inputs",), ("parameters",))
        data, params = body["inputs"], parameters(body) or {}
        top_k(params)
        optional_flag(params, "handle_impossible_answer")
    if isinstance(data, list):
        return PredictRequest([item(v, f"item {i}") for i, v in enumerate(data)], False, True, parameters=params)
    if not isinstance(data, dict):
        raise RequestError(
            "Validation", f'the request body must be {{"question", "context"}} or a list of them, not {type_name(data)}'
        )
    return PredictRequest([item(data, "the request body")], True, True, parameters=params)


def respond(settings, request: PredictRequest, results: list, outputs: list) -> Any:
    """Each answer (the pipeline's shape). With "parameters": `handle_impossible_answer` false never answers
    "no answer" (the best span instead), and `top_k` over 1 gives that many answers, best first."""
    params = request.parameters or {}
    k, impossible = top_k(params) or 1, params.get("handle_impossible_answer")
    items = [_answers(r, k, impossible) if k > 1 else _answer(r, impossible) for r in results]
    return items[0] if request.single else items


def _answer(result, impossible: bool | None) -> dict[str, Any]:
    if impossible is False and not result.answer and result.nbest:
        best = result.nbest[0]
        return {"answer": best["text"], "score": best["probability"], "start": best["start"], "end": best["end"]}
    return result.present()


def _answers(result, k: int, impossible: bool | None) -> list[dict[str, Any]]:
    """The `k` most probable answers: the n-best spans and, where the model may say so, "no answer"."""
    spans = [{"answer": c["text"], "score": c["probability"], "start": c["start"], "end": c["end"]}
             for c in result.nbest]  # fmt: skip
    if result.null_odds is not None and impossible is not False:
        spans.append({"answer": "", "score": max(0.0, 1.0 - sum(c["probability"] for c in result.nbest)),
                      "start": 0, "end": 0})  # fmt: skip
    return sorted(spans, key=lambda a: -a["score"])[:k]


def long_inputs(settings, n: int) -> str:
    return (
        f"contexts of any length are read in overlapping windows of {n} tokens; questions longer than "
        f"{settings.task.max_query_length} word-pieces are cut"
    )


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "oneOf": [
            {"description": "one question", **_ITEM},
            {"type": "array", "items": _ITEM},
            {
                "description": "Hugging Face's Inference API shape (InferenceClient.question_answering)",
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "inputs": {"oneOf": [_ITEM, {"type": "array", "items": _ITEM}]},
                    "parameters": PARAMETERS_SCHEMA
                    | {
                        "properties": {
                            "top_k": {"type": "integer", "minimum": 1},
                            "handle_impossible_answer": {"type": "boolean"},
                        }
                    },
                },
            },
        ],
        "example": EXAMPLE,
    },
    response_schema={
        "oneOf": [
            _ANSWER,
            {"type": "array", "items": _ANSWER, "description": "a batch, or top_k answers"},
            {"type": "array", "items": {"type": "array", "items": _ANSWER}},
        ]
    },  # fmt: skip
    parse=parse,
    respond=respond,
    about=lambda settings: {
        "version_2_with_negative": bool(settings.task.version_2_with_negative),
        "model_type": {"question_answering": {}},
    },
    long_inputs=long_inputs,
    form=lambda settings: {
        "inputs": [
            {"name": "question", "label": "Question"},
            {"name": "context", "label": "Context", "multiline": True},
        ],
        "result": "answer",
        "request": "body",
    },  # fmt: skip
    summary='{"question": "...", "context": "..."} or a list of them (or, as InferenceClient sends it, {"inputs": '
    '{"question", "context"}, "parameters": {...}}); answered with the answer, its score and its character offsets '
    "in the context",
)
