"""Multiple choice as a task: CLUE C3 and SWAG (`bertforge.tasks.multiple_choice_readers`), the head as
`transformers`' `BertForMultipleChoice`.

Each choice is read beside its context as a sentence pair — `[CLS] context [SEP] question choice [SEP]`, cut
longest-first as Google's pair truncation — so a feature is a (choices, tokens) block: its choices padded to
its longest (with their attention mask), and a batch padded to its widest question and longest choice (a
padded choice scores nothing). A result is `{"label": index, "choice": text, "score": p, "scores": [p, ...]}`,
the probabilities of every choice in order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.model_folder import ModelSettings
from bertforge.modeling.heads import BertForMultipleChoice
from bertforge.tasks.multiple_choice_readers import FORMATS, ChoiceExample, read_multiple_choice
from bertforge.tasks.requests import PredictRequest, RequestError, Serving, fields, optional_flag, type_name
from bertforge.tasks.settings import MODEL, setting
from bertforge.tasks.task import Features, Task, TaskConfig
from bertforge.tokenization import FullTokenizer

log = logging.getLogger("bertforge")


@dataclass
class MultipleChoiceConfig(TaskConfig):
    format: str = setting("auto", scope=MODEL, choices=FORMATS)  # c3 (JSON), swag (CSV); auto: by extension
    assessment_method: str = setting("accuracy", choices=("accuracy",))


def read(path: str, tc: MultipleChoiceConfig) -> list[ChoiceExample]:
    examples, report = read_multiple_choice(path, tc.format, skip_bad_lines=tc.skip_bad_lines)
    if report.skipped or report.unlabelled:
        log.info(report.summary())
    return examples


def prepare(tc: MultipleChoiceConfig, train: list, init: ModelSettings | None) -> ModelSettings:
    return ModelSettings(kind="multiple-choice", labels=None, max_seq_length=tc.max_seq_length, task=tc)


def example(raw: Any, index: str) -> ChoiceExample:
    """A record {"context", "question", "choices": [...]} (context or question may be left out)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
        raise BertforgeError(f'expected {{"context", "question", "choices": [...]}}, got {str(raw)[:60]!r}')
    context, question = raw.get("context", ""), raw.get("question", "")
    if not isinstance(context, str) or not isinstance(question, str):
        raise BertforgeError('"context" and "question" must be texts')
    choices = raw["choices"]
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise BertforgeError(f'"choices" must be at least two non-empty texts, got {str(choices)[:60]}')
    if not (context.strip() or question.strip()):
        raise BertforgeError('no "context" and no "question"')
    return ChoiceExample(str(raw.get("id", index)), context, question, list(choices), None, f"input {index}")


def featurize(
    examples: Sequence[ChoiceExample], tokenizer: FullTokenizer, settings: ModelSettings, max_seq_length: int
) -> Features:
    """One (choices, tokens) feature per example; `labels` (the right choice) when every example has one."""
    firsts, seconds = [], []
    for e in examples:
        for choice in e.choices:
            first, second = (e.context, f"{e.question} {choice}") if e.context.strip() else (e.question, choice)
            firsts.append(first)
            seconds.append(second)
    batch = tokenizer.encode_batch(firsts, seconds, max_seq_length)
    inputs: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    truncated, at = 0, 0
    for e in examples:
        encodings = batch.encodings[at : at + len(e.choices)]
        at += len(e.choices)
        width = max(len(enc.input_ids) for enc in encodings)
        truncated += any(enc.truncated for enc in encodings)
        inputs["input_ids"].append([list(enc.input_ids) + [0] * (width - len(enc.input_ids)) for enc in encodings])
        inputs["token_type_ids"].append(
            [list(enc.token_type_ids) + [0] * (width - len(enc.token_type_ids)) for enc in encodings]
        )
        inputs["attention_mask"].append([[1] * len(enc.input_ids) + [0] * (width - len(enc.input_ids))
                                         for enc in encodings])  # fmt: skip
    labelled = [e.label is not None for e in examples]
    if all(labelled) and examples:
        inputs["labels"] = [e.label for e in examples]
    elif any(labelled):
        first = examples[labelled.index(False)]
        raise BertforgeError(f"{first.source}: no answer, but other questions have one")
    return Features(inputs, list(range(len(examples))), truncated)


def postprocess(examples: Sequence[ChoiceExample], features: Features, outputs, settings: ModelSettings) -> list:
    """The softmax over each question's own choices (a padded choice is none of them)."""
    results = []
    for e, out in zip(examples, outputs):
        logits = np.asarray(out["logits"][: len(e.choices)], dtype=np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        best = int(p.argmax())
        results.append({"label": best, "choice": e.choices[best], "score": float(p[best]), "scores": p.tolist()})
    return results


def score(results: list, examples: Sequence[ChoiceExample], settings: ModelSettings, method: str) -> dict[str, float]:
    if any(e.label is None for e in examples):
        where = examples[0].source.split(" record ")[0].split(" line ")[0]  # the file
        raise BertforgeError(f"{where}: questions without answers cannot be scored")
    return {"accuracy": float(np.mean([r["label"] == e.label for r, e in zip(results, examples)]))}


def samples(sentences: Sequence[str]) -> list[dict[str, Any]]:
    """Questions of varied lengths, in two scripts, with three or four choices (export's comparison)."""
    n = len(sentences)
    return [
        {"context": sentences[i], "question": sentences[(i + 1) % n][:20],
         "choices": [sentences[(i + k) % n][: 10 + 7 * k] for k in range(2, 5 + i % 2)]}
        for i in range(n)
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- over HTTP
EXAMPLE = {
    "inputs": {
        "context": "Ada Lovelace was born in London in 1815.",
        "question": "Ada was born in",
        "choices": ["Paris.", "London.", "Rome."],
    }
}
_RESULT = {
    "type": "object",
    "required": ["label", "choice", "score", "scores"],
    "properties": {
        "label": {"type": "integer", "description": "index of the chosen choice"},
        "choice": {"type": "string"},
        "score": {"type": "number"},
        "scores": {"type": "array", "items": {"type": "number"}, "description": "every choice's probability"},
    },
}
_RECORD = {
    "type": "object",
    "required": ["choices"],
    "properties": {
        "context": {"type": "string"},
        "question": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 2},
    },
}


def parse(data: Any) -> PredictRequest:
    body = fields(data, ("inputs",), ("truncate",))
    inputs, single = body["inputs"], isinstance(body["inputs"], dict)
    records = [inputs] if single else inputs
    if not isinstance(records, list):
        raise RequestError("Validation", f"'inputs' must be a question or a list of them, not {type_name(inputs)}")
    # Each record is checked where every task's are: the server turns them into examples (422 naming the input).
    return PredictRequest(records, single, truncate=optional_flag(body, "truncate"))


SERVING = Serving(
    example=EXAMPLE,
    request_schema={
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {"oneOf": [_RECORD, {"type": "array", "items": _RECORD}]},
            "truncate": {"type": "boolean", "default": False},
        },
        "example": EXAMPLE,
    },  # fmt: skip
    response_schema={"oneOf": [_RESULT, {"type": "array", "items": _RESULT}]},
    parse=parse,
    respond=lambda settings, request, results, outputs: results[0] if request.single else results,
    about=lambda settings: {"model_type": {"multiple_choice": {}}},
    long_inputs=lambda settings, n: f'inputs longer than {n} tokens are refused (422) unless "truncate": true',
    form=lambda settings: {
        "inputs": [
            {"name": "context", "label": "Context", "multiline": True},
            {"name": "question", "label": "Question"},
            {"name": "choices", "label": "Choices (one per line)", "multiline": True, "lines": True},
        ],
        "result": "choices",
        "request": "fields",
    },  # fmt: skip
    summary='{"inputs": {"context", "question", "choices": [...]}} or {"inputs": [...]} for a batch; answered '
    "with the chosen choice, its index and every choice's probability",
)

TASK = Task(
    kind="multiple-choice",
    config=MultipleChoiceConfig,
    head=BertForMultipleChoice,
    default_method="accuracy",
    methods={"accuracy": "accuracy"},
    read=read,
    prepare=prepare,
    model_overrides=lambda settings: {},
    example=example,
    featurize=featurize,
    loss_count=lambda batch: torch.tensor(float(len(batch["labels"]))),
    postprocess=postprocess,
    score=score,
    record=dict,
    fields=(),
    serving=SERVING,
    input_axes=("batch", "choice", "sequence"),
    samples=samples,
    from_transformers=lambda config, defaults: (None, defaults),
)
