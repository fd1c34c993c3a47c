"""A label list: the label ↔ id mapping, fixed once (from a labels file, the training labels, a benchmark's
known list or a model folder) and applied identically at training, evaluation and prediction time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text


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
    def from_examples(cls, examples: Sequence, origin: str = "the training labels") -> LabelMap:
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
