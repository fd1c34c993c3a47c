"""Multiple-choice files in their public formats: CLUE C3 (a JSON list of `[[context sentences...],
[{"question", "choice": [...], "answer"}, ...], id]`, the answer given as the right choice's text; test files
may leave it out) and SWAG as `transformers`' run_swag reads it (CSV with `sent1`, `sent2`, `ending0..3`,
`label`; the context is `sent1`, each choice `sent2` + " " + ending). Every problem names the file and the
record; with `skip_bad_lines` a bad record is skipped and counted instead."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.tasks.classification_readers import ReadReport, named_rows, table_rows

FORMATS = ("auto", "c3", "swag")
SWAG_ENDINGS = tuple(f"ending{i}" for i in range(4))


@dataclass
class ChoiceExample:
    guid: str
    context: str  # may be empty (a question alone)
    question: str  # put before each choice; may be empty (SWAG's `sent2` is the choices' common start)
    choices: list[str]
    label: int | None  # index of the right choice; None when unlabelled
    source: str  # "file record N" for messages


def read_multiple_choice(
    path: str | Path, format: str = "auto", skip_bad_lines: bool = False
) -> tuple[list[ChoiceExample], ReadReport]:
    """The examples of a C3 JSON or SWAG CSV file (`auto`: by extension) and what reading it did."""
    path = Path(path)
    if not path.is_file():
        raise BertforgeError(f"{path}: no such file")
    kind = format if format != "auto" else {".json": "c3", ".csv": "swag"}.get(path.suffix.lower())
    if kind not in ("c3", "swag"):
        raise BertforgeError(f"{path}: unknown multiple-choice format {format!r}; expected one of {', '.join(FORMATS)}")
    report = ReadReport(str(path))
    examples = []
    for where, make in (_c3 if kind == "c3" else _swag)(path):
        report.records += 1
        try:
            example = make(where)
        except BertforgeError as exc:
            if not skip_bad_lines:
                raise BertforgeError(f"{where}: {exc}") from None
            report.skip("bad record", f"{where}: {exc}")
            continue
        report.unlabelled += example.label is None
        examples.append(example)
    if not examples:
        raise BertforgeError(f"{path}: no examples ({report.summary()})")
    return examples, report


def _problem(message: str):
    def fail(where: str) -> ChoiceExample:
        raise BertforgeError(message)

    return fail


def _choice_example(guid: str, context: str, question: str, choices: Any, answer: Any, where: str) -> ChoiceExample:
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise BertforgeError(f"expected a list of at least two non-empty choices, got {json.dumps(choices)[:80]}")
    if not (context.strip() or question.strip()):
        raise BertforgeError("no context and no question")
    return ChoiceExample(guid, context, question, list(choices), answer, where)


def _c3(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BertforgeError(f"{path}: not C3 JSON ({exc})") from None
    if not isinstance(data, list):
        raise BertforgeError(f"{path}: not C3 JSON (a list of [context, questions, id] expected)")
    for n, item in enumerate(data):
        where = f"{path} record {n + 1}"
        if not (isinstance(item, list) and len(item) >= 2 and isinstance(item[0], list) and isinstance(item[1], list)):
            yield where, _problem("expected [[context sentences], [questions], id]")
            continue
        context = "\n".join(s for s in item[0] if isinstance(s, str))
        doc_id = str(item[2]) if len(item) > 2 else str(n)
        for q, question in enumerate(item[1]):
            yield f"{where} question {q + 1}", _c3_question(question, context, f"{doc_id}-{q}")


def _c3_question(question: Any, context: str, guid: str):
    def make(where: str) -> ChoiceExample:
        if not isinstance(question, dict) or not isinstance(question.get("question"), str):
            raise BertforgeError('expected {"question", "choice", "answer"}')
        choices = question.get("choice")
        answer = question.get("answer")
        label = None
        if answer is not None:
            if not isinstance(choices, list) or answer not in choices:
                raise BertforgeError(f"answer {json.dumps(answer, ensure_ascii=False)} is not one of the choices")
            label = choices.index(answer)
        return _choice_example(guid, context, question["question"], choices, label, where)

    return make


def _swag(path: Path):
    rows = table_rows(path, str(path), "csv")
    header = next(rows, None)
    if header is None:
        return
    names = [n.strip() for n in header[1]]
    missing = [n for n in ("sent1", "sent2", *SWAG_ENDINGS) if n not in names]
    if missing:
        raise BertforgeError(f"{path}: not a SWAG file: no column {missing[0]!r} (columns: {', '.join(names)})")
    for number, row in named_rows(rows, names):
        where = f"{path} line {number}"
        yield where, (_problem(row) if isinstance(row, str) else _swag_row(row, number))


def _swag_row(row: dict[str, str], number: int):
    def make(where: str) -> ChoiceExample:
        label = row.get("label", "").strip()
        if label and (not label.isdigit() or int(label) >= len(SWAG_ENDINGS)):
            raise BertforgeError(f"label {label!r} is not a choice index 0-{len(SWAG_ENDINGS) - 1}")
        choices = [row[e] for e in SWAG_ENDINGS]
        guid = (row.get("") or row.get("video-id") or str(number)).strip()
        return _choice_example(guid, row["sent1"], row["sent2"], choices, int(label) if label else None, where)

    return make
