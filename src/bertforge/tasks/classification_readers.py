"""Sentence(-pair) classification data in its public formats → `Example`s.

Covers CLUE's JSON lines (tnews, iflytek, afqmc, cmnli, ocnli, csl), GLUE's nine TSV tasks, and generic
CSV / TSV / JSON lines files with configurable column names. Every problem in a file is either a
`BertforgeError` naming the file and line, or (with ``skip_bad_lines``) a counted skip in the `ReadReport`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.errors import BertforgeError


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: str | float | None  # a class name, a regression score, or None in unlabelled (test) files
    guid: str  # the record's id field where the format has one, else its 0-based index in the file
    source: str  # "train.json line 17", for messages
    keep_end: bool = False  # a text too long keeps its end, not its start (TEI's truncation_direction "Left")


@dataclass
class ReadReport:
    """What reading one file did: records seen, records skipped (by reason, with the first few), unlabelled."""

    path: str
    records: int = 0  # records read, kept or skipped
    skipped: Counter[str] = field(default_factory=Counter)
    skip_examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first messages
    unlabelled: int = 0

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        first = self.skip_examples.setdefault(reason, [])
        if len(first) < 3:
            first.append(message)

    def summary(self) -> str:
        kept = self.records - sum(self.skipped.values())
        text = f"{self.path}: {kept} examples from {self.records} records"
        if self.unlabelled:
            text += f", {self.unlabelled} unlabelled"
        for reason, count in self.skipped.items():
            text += f"; skipped {count} ({reason}), e.g. {self.skip_examples[reason][0]}"
        return text


@dataclass(frozen=True)
class _Format:
    kind: str  # "jsonl", "tsv" (tab-separated, quote characters are text) or "csv"
    text_a: str | tuple[str, ...]  # a column name, or names to try in order (generic formats)
    text_b: str | None
    label: str
    id: str | None
    text_b_optional: bool = False  # generic formats: use text_b only when the file has that column
    columns: tuple[str, ...] | None = None  # column names of a headerless file (CoLA train/dev)
    regression: bool = False
    no_gold: str | None = None  # label value for "annotators did not agree": skipped and counted, as CLUE does


_CLUE_NLI = _Format("jsonl", "sentence1", "sentence2", "label", "id", no_gold="-")
FORMATS: dict[str, _Format] = {
    "tnews": _Format("jsonl", "sentence", None, "label", "id"),
    "iflytek": _Format("jsonl", "sentence", None, "label", "id"),
    "afqmc": _Format("jsonl", "sentence1", "sentence2", "label", "id"),
    "cmnli": _CLUE_NLI,
    "ocnli": _CLUE_NLI,
    "csl": _Format("jsonl", "keyword", "abst", "label", "id"),  # the keyword list is joined with spaces
    # GLUE: columns by header name (MNLI's train and dev files differ in their columns); CoLA's train and
    # dev files have no header, its test file has `index  sentence`.
    "cola": _Format(
        "tsv", "sentence", None, "label", "index", columns=("source", "label", "original_label", "sentence")
    ),
    "sst2": _Format("tsv", "sentence", None, "label", "index"),
    "mrpc": _Format("tsv", "#1 String", "#2 String", "Quality", "index"),
    "stsb": _Format("tsv", "sentence1", "sentence2", "score", "index", regression=True),
    "qqp": _Format("tsv", "question1", "question2", "is_duplicate", "id"),
    "mnli": _Format("tsv", "sentence1", "sentence2", "gold_label", "index", no_gold="-"),
    "qnli": _Format("tsv", "question", "sentence", "label", "index"),
    "rte": _Format("tsv", "sentence1", "sentence2", "label", "index"),
    "wnli": _Format("tsv", "sentence1", "sentence2", "label", "index"),
}
_GENERIC = {
    kind: _Format(kind, ("text_a", "text"), "text_b", "label", "id", text_b_optional=True)
    for kind in ("csv", "tsv", "jsonl")
}
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def task_name(task: str) -> str:
    """Canonical task name: "SST-2" → "sst2", "STS-B" → "stsb", "MNLI" → "mnli"."""
    return task.lower().replace("-", "").replace("_", "")


def read_examples(
    path: str | Path,
    task: str = "auto",
    *,
    text_a: str | None = None,
    text_b: str | None = None,
    label: str | None = None,
    regression: bool = False,
    skip_bad_lines: bool = False,
) -> tuple[list[Example], ReadReport]:
    """Read one file of task `task` (a CLUE/GLUE task name, "csv", "tsv", "jsonl", or "auto" for generic by
    extension). `text_a` / `text_b` / `label` override the format's column names; `regression` reads labels
    as floats (implied by stsb). Records whose label is a "no gold label" marker are always skipped and
    counted; other bad records raise unless `skip_bad_lines`."""
    path_str = str(path)
    path = Path(path)
    name = task_name(task)
    if name == "auto":
        name = _EXTENSIONS.get(path.suffix.lower(), "")
        if not name:
            raise BertforgeError(
                f"{path_str}: cannot tell the format from the extension {path.suffix!r}; "
                f"name it (csv, tsv, jsonl, or a task: {', '.join(FORMATS)})"
            )
    fmt = FORMATS.get(name) or _GENERIC.get(name)
    if fmt is None:
        raise BertforgeError(f"unknown task {task!r}; expected auto, csv, tsv, jsonl or one of {', '.join(FORMATS)}")
    fmt = dataclasses.replace(
        fmt,
        text_a=text_a or fmt.text_a,
        text_b=text_b or fmt.text_b,
        label=label or fmt.label,
        text_b_optional=fmt.text_b_optional and text_b is None,
        regression=fmt.regression or regression,
    )
    if not path.is_file():
        raise BertforgeError(f"{path_str}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise BertforgeError(f"{path_str}: file is empty; expected {_describe(fmt)}")
    records = json_records(path, path_str) if fmt.kind == "jsonl" else _table_records(path, path_str, fmt)
    report = ReadReport(path_str)
    examples = []
    for index, (line, record) in enumerate(records):
        report.records += 1
        where = f"{path_str} line {line}"
        try:
            example = _example(record, fmt, str(index), where)
        except _BadRecord as bad:
            if bad.reason != "no gold label" and not skip_bad_lines:
                raise BertforgeError(f"{where}: {bad.message}") from None
            report.skip(bad.reason, f"{where}: {bad.message}")
            continue
        report.unlabelled += example.label is None
        examples.append(example)
    if report.records == 0:
        raise BertforgeError(f"{path_str}: no records; expected {_describe(fmt)}")
    return examples, report


class _BadRecord(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _describe(fmt: _Format) -> str:
    a = fmt.text_a if isinstance(fmt.text_a, str) else " or ".join(fmt.text_a)
    b = f", {fmt.text_b}" if fmt.text_b else ""
    kind = {"jsonl": "JSON lines with", "tsv": "tab-separated columns", "csv": "CSV columns"}[fmt.kind]
    return f"{kind} {a}{b}, {fmt.label}"


def lines(path: Path, path_str: str, on_invalid: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line ending), splitting only at \\n: CR and U+2028 are text.
    A path of "-" reads standard input. Streams: memory does not grow with the file. A line that is not
    UTF-8 is an error naming it, or, given `on_invalid(line number, message)`, reported there and blanked."""
    with contextlib.nullcontext(sys.stdin.buffer) if path_str == "-" else path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError as exc:
                message = f"{path_str} line {number}: not valid UTF-8 ({exc.reason})"
                if on_invalid is None:
                    raise BertforgeError(message) from None
                on_invalid(number, message)
                text = ""  # a blank line in its place keeps the numbering; readers skip blank lines
            yield number, text


# A record is its fields by name, or the problem that kept them from being read.
_Record = dict | _BadRecord


def json_records(
    path: Path, path_str: str, on_invalid: Callable[[int, str], None] | None = None
) -> Iterator[tuple[int, _Record]]:
    for number, text in lines(path, path_str, on_invalid):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, _BadRecord("malformed JSON", f"malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            value = _BadRecord("malformed JSON", f"expected a JSON object, got {text[:60]!r}")
        yield number, value


def table_rows(
    path: Path, path_str: str, kind: str, on_invalid: Callable[[int, str], None] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank row. TSV is split at tabs (GLUE's quote characters are text);
    CSV follows RFC 4180, so a quoted field may hold newlines and a record may span lines."""
    if kind == "tsv":
        for number, text in lines(path, path_str, on_invalid):
            if text.strip():
                yield number, text.split("\t")
        return
    texts = (text + "\n" for _, text in lines(path, path_str, on_invalid))
    reader = csv.reader(texts, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BertforgeError(f"{path_str} line {start}: bad CSV record ({exc})") from None
        if any(f.strip() for f in row):
            yield start, row
        start = reader.line_num + 1


def _table_records(path: Path, path_str: str, fmt: _Format) -> Iterator[tuple[int, _Record]]:
    rows = table_rows(path, path_str, fmt.kind)
    first = next(rows, None)
    if first is None:
        return
    number, header = first
    names = [n.strip() for n in header]
    wanted = fmt.text_a if isinstance(fmt.text_a, str) else fmt.text_a[0]
    if fmt.columns is not None and wanted not in names:  # a headerless file: the first row is data
        names, rows = list(fmt.columns), itertools.chain([first], rows)
    else:
        _check_header(names, fmt, f"{path_str} line {number}")
    yield from named_rows(rows, names)


def named_rows(rows: Iterator[tuple[int, list[str]]], names: list[str]) -> Iterator[tuple[int, _Record]]:
    """(line, {column: field}) for each row, or the row's problem when its field count is not the header's."""
    for number, row in rows:
        if len(row) == len(names):
            yield number, dict(zip(names, row))
        else:
            yield (
                number,
                _BadRecord("wrong field count", f"{len(row)} fields, expected {len(names)} ({', '.join(names)})"),
            )


def _check_header(names: list[str], fmt: _Format, where: str) -> None:
    """A text column missing from the header is a file-level error: no record of the file could be read."""
    found = ", ".join(repr(n) for n in names)
    candidates = (fmt.text_a,) if isinstance(fmt.text_a, str) else fmt.text_a
    if not any(c in names for c in candidates):
        wanted = " or ".join(repr(c) for c in candidates)
        raise BertforgeError(f"{where}: no column {wanted} in the header (columns: {found})")
    if fmt.text_b and not fmt.text_b_optional and fmt.text_b not in names:
        raise BertforgeError(f"{where}: no column {fmt.text_b!r} in the header (columns: {found})")


def _example(record: _Record, fmt: _Format, index: str, where: str) -> Example:
    if isinstance(record, _BadRecord):
        raise record
    candidates = (fmt.text_a,) if isinstance(fmt.text_a, str) else fmt.text_a
    key_a = next((c for c in candidates if c in record), candidates[0])
    text_a = _text(record, key_a)
    has_b = fmt.text_b is not None and (fmt.text_b in record or not fmt.text_b_optional)
    text_b = _text(record, fmt.text_b) if has_b else None
    value = record.get(fmt.label)
    if value is None:  # no label column (a test file) or a JSON null
        label = None
    elif isinstance(value, str) and not value.strip():
        raise _BadRecord("empty label", f"empty label {fmt.label!r}")
    elif fmt.no_gold is not None and value == fmt.no_gold:
        raise _BadRecord("no gold label", f"label {value!r} means no gold label")
    elif fmt.regression:
        try:
            label = float(value)
        except (TypeError, ValueError):
            raise _BadRecord("bad label", f"label {value!r} in {fmt.label!r} is not a number") from None
        if not math.isfinite(label):
            raise _BadRecord("bad label", f"label {value!r} in {fmt.label!r} is not a finite number")
    else:
        label = str(value).strip()
    guid = record.get(fmt.id) if fmt.id else None
    return Example(text_a, text_b, label, index if guid is None or guid == "" else str(guid), where)


def _text(record: dict, key: str) -> str:
    if key not in record:
        fields = ", ".join(repr(k) for k in record)
        raise _BadRecord("missing field", f"no field {key!r} (fields: {fields})")
    value = record[key]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):  # CSL's keyword list
        value = " ".join(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _BadRecord("bad text", f"field {key!r} is {type(value).__name__}, expected a string")
    if not value.strip():
        raise _BadRecord("empty text", f"empty text in {key!r}")
    return value
