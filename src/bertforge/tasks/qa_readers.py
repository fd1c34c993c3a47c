"""Extractive question answering data in the SQuAD layout → `QaExample`s.

One JSON document `{"version"?: ..., "data": [{"paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}` covers SQuAD v1.1 and v2.0, CMRC2018 and DRCD
(and MLQA, XQuAD); the `version` key is optional and not needed to read a file. `plausible_answers` (v2.0) are
not training targets and no official scorer reads them, so they are ignored.

Answers are checked against their context here, once: an `answer_start` that does not point at `text` is an error
naming the file and question id, or with `skip_bad_lines` a counted skip in the `ReadReport`, so that features
and scores never meet a misplaced answer. A file that is not JSON or not this layout is a one-line error.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.tasks.classification_readers import ReadReport


@dataclass
class QaExample:
    qid: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, character start in context); [] if impossible or unlabelled
    is_impossible: bool  # SQuAD v2.0: the context does not answer the question
    source: str  # "dev.json: question 56be4db0acb8001400a502ec", for messages

    @property
    def guid(self) -> str:
        return self.qid

    @property
    def labelled(self) -> bool:
        return bool(self.answers) or self.is_impossible


def read_qa(path: str | Path, *, skip_bad_lines: bool = False) -> tuple[list[QaExample], ReadReport]:
    """Read one SQuAD-layout file. Question ids are kept as strings (an integer id becomes its decimal text),
    since predictions.json maps ids to answers. Questions without answers (test files) are read as unlabelled;
    CLUE's test files mark them with placeholder answers at `answer_start` -1, which are dropped."""
    path_str, path = str(path), Path(path)
    if not path.is_file():
        raise BertforgeError(f"{path_str}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise BertforgeError(f"{path_str}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BertforgeError(
            f"{path_str}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise BertforgeError(f"{path_str}: JSON nested too deeply to be a SQuAD-layout file") from None
    report = ReadReport(path_str)
    examples: list[QaExample] = []
    first_seen: dict[str, str] = {}  # question id -> where it first appeared
    for where, context, qa in _questions(document, path_str):
        report.records += 1
        try:
            example = _example(qa, context, path_str, where)
            if example.qid in first_seen:
                first = first_seen[example.qid]
                raise _BadQuestion("duplicate id", f"question id {example.qid!r} is already used at {first}")
        except _BadQuestion as bad:
            message = f"{path_str}: {bad.name or where}: {bad.message}"
            if not skip_bad_lines:
                raise BertforgeError(message) from None
            report.skip(bad.reason, message)
            continue
        first_seen[example.qid] = where
        report.unlabelled += not example.labelled
        examples.append(example)
    if report.records == 0:
        raise BertforgeError(f"{path_str}: no questions (expected data[].paragraphs[].qas[])")
    if not examples:
        reasons = ", ".join(f"{count} {reason}" for reason, count in report.skipped.items())
        raise BertforgeError(f"{path_str}: no questions left, all {report.records} were skipped ({reasons})")
    return examples, report


class _BadQuestion(Exception):
    def __init__(self, reason: str, message: str, name: str = ""):
        super().__init__(message)
        self.reason, self.message, self.name = reason, message, name  # name: "question ID", once it is known


def _questions(document: object, path_str: str):
    """(location, context, question record) for every question. The layout above the questions must hold:
    a paragraph without its context or its question list leaves nothing to read, so it is a file error."""

    def expect(value: object, kind: type, where: str, what: str) -> None:
        if not isinstance(value, kind):
            found = "nothing" if value is None else type(value).__name__
            raise BertforgeError(f"{path_str}: {where}: expected {what}, found {found} (not a SQuAD-layout file)")

    expect(document, dict, "top level", 'an object with a "data" list')
    expect(document.get("data"), list, '"data"', "a list of articles")
    for i, article in enumerate(document["data"]):
        expect(article, dict, f"data[{i}]", 'an article object with "paragraphs"')
        expect(article.get("paragraphs"), list, f"data[{i}].paragraphs", "a list of paragraphs")
        for j, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{i}].paragraphs[{j}]"
            expect(paragraph, dict, where, 'a paragraph object with "context" and "qas"')
            expect(paragraph.get("context"), str, f"{where}.context", "a string")
            expect(paragraph.get("qas"), list, f"{where}.qas", "a list of questions")
            for k, qa in enumerate(paragraph["qas"]):
                yield f"{where}.qas[{k}]", paragraph["context"], qa


def _example(qa: object, context: str, path_str: str, where: str) -> QaExample:
    if not isinstance(qa, dict):
        raise _BadQuestion("malformed question", f"expected a question object, found {type(qa).__name__}")
    qid = qa.get("id")
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not qid.strip():
        raise _BadQuestion("missing id", f"no question id (found {qid!r})")
    name = f"question {qid}"

    def bad(reason: str, message: str) -> _BadQuestion:
        return _BadQuestion(reason, message, name)

    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("empty question", f"no question text (found {question!r})")
    if not context.strip():
        raise bad("empty context", "its paragraph's context is empty")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise bad("malformed question", f"is_impossible is {impossible!r}, expected true or false")
    raw = qa.get("answers", [])
    if not isinstance(raw, list):
        raise bad("malformed answers", f"answers is {type(raw).__name__}, expected a list")
    answers = []
    for n, answer in enumerate(raw):
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise bad("malformed answers", f"answer {n} is {answer!r}, expected {{'text', 'answer_start'}}")
        text, start = answer["text"], answer.get("answer_start")
        if start == -1:  # CLUE's test files: "FAKE_ANSWER_1" at -1 stands for "not given"
            continue
        if not isinstance(start, int) or isinstance(start, bool):
            raise bad("malformed answers", f"answer {n} ({text!r}) has answer_start {start!r}, expected an integer")
        if not text.strip():
            raise bad("malformed answers", f"answer {n} has an empty text")
        if start < 0 or context[start : start + len(text)] != text:
            found = f"found {context[start : start + len(text)]!r} there" if start >= 0 else "a negative offset"
            raise bad(
                "answer not at answer_start",
                f"answer {n} {text!r} is not at answer_start {start} of the context ({found})",
            )
        answers.append((text, start))
    if impossible and answers:
        raise bad("impossible with answers", f"is_impossible is true but {len(answers)} answers are given")
    return QaExample(qid, question, context, answers, impossible, f"{path_str}: {name}")


def split_paragraphs(document: dict, fraction: float, seed: int = 0) -> tuple[dict, dict]:
    """A SQuAD-layout document split by paragraph, shuffled with `seed`: `fraction` of the paragraphs go to the
    first part. Every context stays on one side, so a dev score measures reading text never trained on."""
    paragraphs = [(article.get("title", ""), p) for article in document["data"] for p in article["paragraphs"]]
    random.Random(seed).shuffle(paragraphs)
    cut = int(fraction * len(paragraphs))
    version = {"version": document["version"]} if "version" in document else {}
    return tuple(
        version | {"data": [{"title": title, "paragraphs": [p]} for title, p in part]}
        for part in (paragraphs[:cut], paragraphs[cut:])
    )
