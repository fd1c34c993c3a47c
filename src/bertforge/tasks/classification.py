"""Sentence(-pair) classification and regression: the label map, model inputs, and prediction files.

Reading the public formats lives in `bertforge.tasks.readers` (re-exported here). A `LabelMap` fixes the
label ↔ id mapping once (from a labels file, the training labels, or a task's known list) and is saved next
to the model, so training, evaluation and prediction all apply the same mapping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.tasks.readers import FORMATS, Example, ReadReport, read_examples, task_name
from bertforge.tokenization import FullTokenizer

__all__ = [
    "Example",
    "ReadReport",
    "read_examples",
    "LabelMap",
    "Features",
    "featurize",
    "is_regression",
    "write_predictions",
    "write_clue_submission",
    "write_glue_predictions",
]

_NLI = ("contradiction", "entailment", "neutral")
_BINARY = ("0", "1")
# Fixed label lists, in the order of the reference implementations (Google BERT's and CLUE's processors).
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "cola": _BINARY,
    "sst2": _BINARY,
    "mrpc": _BINARY,
    "qqp": _BINARY,
    "wnli": _BINARY,
    "mnli": _NLI,
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "afqmc": _BINARY,
    "csl": _BINARY,
    "cmnli": _NLI,
    "ocnli": _NLI,
    "tnews": tuple(str(100 + i) for i in range(17) if i not in (5, 11)),  # 15 codes, 105 and 111 unused
    "iflytek": tuple(str(i) for i in range(119)),
}
# CLUE's field for a label's readable name, as spelled in each task's files.
_CLUE_DESC_FIELD = {"tnews": "label_desc", "iflytek": "label_des"}


def is_regression(task: str) -> bool:
    """Whether `task` predicts a score (STS-B) rather than a class."""
    fmt = FORMATS.get(task_name(task))
    return fmt is not None and fmt.regression


@dataclass
class LabelMap:
    """The class names in id order. `origin` names where the list came from, for error messages."""

    labels: list[str]
    origin: str = "the label list"
    descriptions: dict[str, str] = field(default_factory=dict)  # label -> readable name (CLUE labels.json)

    def __post_init__(self) -> None:
        self._ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._ids) != len(self.labels):
            twice = sorted({x for x in self.labels if self.labels.count(x) > 1})
            raise BertforgeError(f"{self.origin}: label {twice[0]!r} is listed twice")
        if not self.labels:
            raise BertforgeError(f"{self.origin}: no labels")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def encode(self, label: str | int, source: str = "") -> int:
        """Id of `label`; `source` ("dev.json line 17") is named in the error for a label outside the map."""
        try:
            return self._ids[str(label)]
        except KeyError:
            where = f"{source}: " if source else ""
            raise BertforgeError(
                f"{where}label {str(label)!r} is not in {self.origin} ({self.num_labels} labels)"
            ) from None

    def decode(self, i: int) -> str:
        if not 0 <= int(i) < self.num_labels:
            raise BertforgeError(f"label id {i} is out of range for {self.origin} ({self.num_labels} labels)")
        return self.labels[int(i)]

    @classmethod
    def for_task(cls, task: str) -> LabelMap | None:
        """The fixed label list of a CLUE/GLUE task; None for regression and generic formats."""
        name = task_name(task)
        return cls(list(TASK_LABELS[name]), f"the {name} labels") if name in TASK_LABELS else None

    @classmethod
    def from_examples(cls, examples: Sequence[Example], origin: str = "the training labels") -> LabelMap:
        """Sorted unique labels: numerically when all are integers ("2" before "10"), else as strings."""
        labels = {str(e.label) for e in examples if e.label is not None}
        if not labels:
            where = examples[0].source.rsplit(" line ", 1)[0] + ": " if examples else ""
            raise BertforgeError(f"{where}no labelled examples to take the label list from")
        numeric = all(x.lstrip("-").isdigit() for x in labels)
        return cls(sorted(labels, key=int if numeric else None), origin)

    def save(self, path: str | Path) -> None:
        data = {"labels": self.labels, "descriptions": self.descriptions}
        atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        """A saved map (`save`), a CLUE labels.json (JSON lines with "label" and "label_desc"/"label_des"),
        or a text file with one label per line."""
        path_str, path = str(path), Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise BertforgeError(f"{path_str}: no such labels file") from None
        except UnicodeDecodeError as exc:
            raise BertforgeError(f"{path_str}: labels file is not valid UTF-8 ({exc.reason})") from None
        try:
            saved = json.loads(text)
        except json.JSONDecodeError:
            saved = None
        if isinstance(saved, dict) and isinstance(saved.get("labels"), list):
            return cls([str(x) for x in saved["labels"]], path_str, dict(saved.get("descriptions") or {}))
        labels, descriptions = [], {}
        is_json = path.suffix.lower() in (".json", ".jsonl")
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            label = line.strip()
            if is_json:
                label, desc = _clue_label_line(line, f"{path_str} line {number}")
                if desc is not None:
                    descriptions[label] = desc
            if label in labels:
                raise BertforgeError(f"{path_str} line {number}: label {label!r} is listed twice")
            labels.append(label)
        if not labels:
            raise BertforgeError(f"{path_str}: labels file is empty, expected one label per line")
        return cls(labels, path_str, descriptions)


def _clue_label_line(line: str, where: str) -> tuple[str, str | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BertforgeError(f'{where}: malformed JSON ({exc.msg}); expected {{"label": ...}}') from None
    if not isinstance(record, dict) or record.get("label") is None:
        raise BertforgeError(f'{where}: expected a JSON object with a "label", got {line.strip()[:60]!r}')
    desc = record.get("label_desc", record.get("label_des"))
    return str(record["label"]), None if desc is None else str(desc)


@dataclass
class Features:
    """Unpadded model inputs, one entry per example in input order."""

    input_ids: list[list[int]]  # [CLS] a [SEP] (b [SEP])
    token_type_ids: list[list[int]]
    labels: list[int] | list[float] | None  # class ids, regression scores, or None for unlabelled examples
    lengths: list[int]
    num_truncated: int  # examples cut to max_seq_length


def featurize(
    examples: Sequence[Example], tokenizer: FullTokenizer, max_seq_length: int, label_map: LabelMap | None
) -> Features:
    """Tokenize `examples` with Google's pair truncation. With a `label_map` labels become ids; without one
    they must be regression scores. Labels are None when no example has one; a mix is an error."""
    labels = _labels(examples, label_map)
    encodings: list = [None] * len(examples)
    num_truncated = 0
    # encode_batch takes all singles or all pairs; hand-built lists may mix the two.
    for pair in (False, True):
        idx = [i for i, e in enumerate(examples) if (e.text_b is not None) == pair]
        if not idx:
            continue
        batch = tokenizer.encode_batch(
            [examples[i].text_a for i in idx], [examples[i].text_b for i in idx] if pair else None, max_seq_length
        )
        num_truncated += batch.num_truncated
        for i, enc in zip(idx, batch.encodings):
            encodings[i] = enc
    return Features(
        [e.input_ids for e in encodings],
        [e.token_type_ids for e in encodings],
        labels,
        [len(e.input_ids) for e in encodings],
        num_truncated,
    )


def _labels(examples: Sequence[Example], label_map: LabelMap | None) -> list[int] | list[float] | None:
    unlabelled = [e for e in examples if e.label is None]
    if len(unlabelled) == len(examples):
        return None
    if unlabelled:
        raise BertforgeError(
            f"{unlabelled[0].source}: no label, but other examples have one "
            f"({len(unlabelled)} of {len(examples)} unlabelled)"
        )
    if label_map is not None:
        return [label_map.encode(e.label, e.source) for e in examples]
    scores = []
    for e in examples:
        if not isinstance(e.label, (int, float)) or isinstance(e.label, bool):
            raise BertforgeError(
                f"{e.source}: label {e.label!r} is a class name, but no label map was given "
                f"(only regression scores go without one)"
            )
        scores.append(float(e.label))
    return scores


def write_predictions(
    path: str | Path, examples: Sequence[Example], probabilities: np.ndarray | Sequence, label_map: LabelMap | None
) -> None:
    """`predictions.jsonl`, one line per example in input order: {"guid", "label", "probabilities": {name: p}}
    for classification (probabilities: (N, num_labels)); {"guid", "score"} for regression (scores: (N,))."""
    values = np.asarray(probabilities, dtype=np.float64)
    if label_map is None:
        values = values.reshape(len(values), -1)
        if values.shape[1] != 1:
            raise BertforgeError(
                f"{path}: {values.shape[1]} values per example but no label map (regression "
                "predictions have one score each)"
            )
    elif values.ndim != 2 or values.shape[1] != label_map.num_labels:
        raise BertforgeError(
            f"{path}: probabilities of shape {values.shape}, expected "
            f"({len(examples)}, {label_map.num_labels}) for {label_map.origin}"
        )
    _check_count(path, examples, values)
    lines = []
    for example, row in zip(examples, values):
        if label_map is None:
            record = {"guid": example.guid, "score": float(row[0])}
        else:
            probs = {name: float(p) for name, p in zip(label_map.labels, row)}
            record = {"guid": example.guid, "label": label_map.decode(int(np.argmax(row))), "probabilities": probs}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def write_clue_submission(
    path: str | Path,
    examples: Sequence[Example],
    predicted_labels: Sequence[str],
    task: str,
    label_map: LabelMap | None = None,
) -> None:
    """A CLUE submission file (`<task>_predict.json`): {"id": <test id>, "label": "<label>"} per line; tnews
    and iflytek lines also carry the readable name (tnews "label_desc", iflytek "label_des") when `label_map`
    was loaded from CLUE's labels.json."""
    name = task_name(task)
    if name not in TASK_LABELS or FORMATS[name].kind != "jsonl":
        raise BertforgeError(
            f"{task!r} is not a CLUE classification task "
            f"({', '.join(t for t in TASK_LABELS if FORMATS[t].kind == 'jsonl')})"
        )
    _check_count(path, examples, predicted_labels)
    desc_field = _CLUE_DESC_FIELD.get(name)
    descriptions = label_map.descriptions if label_map is not None and desc_field else {}
    lines = []
    for example, label in zip(examples, predicted_labels):
        record = {"id": int(example.guid) if example.guid.isdigit() else example.guid, "label": str(label)}
        if str(label) in descriptions:
            record[desc_field] = descriptions[str(label)]
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def write_glue_predictions(
    path: str | Path, examples: Sequence[Example], predictions: Sequence[str] | Sequence[float]
) -> None:
    """A GLUE submission TSV (`index<TAB>prediction`): the test file's index, and a label name or a score."""
    _check_count(path, examples, predictions)
    rows = ["index\tprediction\n"]
    for example, p in zip(examples, predictions):
        value = p if isinstance(p, str) else f"{float(p):.6g}"
        rows.append(f"{example.guid}\t{value}\n")
    atomic_write_text(path, "".join(rows))


def _check_count(path: str | Path, examples: Sequence[Example], predictions: Sequence | np.ndarray) -> None:
    if len(predictions) != len(examples):
        raise BertforgeError(f"{path}: {len(predictions)} predictions for {len(examples)} examples")
