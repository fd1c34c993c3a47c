"""Files in and out of `bertforge predict`: raw inputs streamed from a text file (one input per line), JSON
lines, CSV/TSV with named columns or standard input; results written as JSON lines in input order,
atomically (a failed run leaves no partial file and never replaces an existing one unless asked)."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_path, check_output_file
from bertforge.tasks.classification_readers import json_records, lines, named_rows, table_rows

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
FORMATS = ("auto", "text", "jsonl", "csv", "tsv")


@dataclass
class InputReport:
    """Records read and skipped (by reason, with the first message of each)."""

    path: str
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        self.first.setdefault(reason, message)

    def summary(self) -> str:
        text = f"{self.path}: {self.records - sum(self.skipped.values())} inputs from {self.records} records"
        for reason, count in self.skipped.items():
            text += f"; skipped {count} ({reason}), e.g. {self.first[reason]}"
        return text


def read_inputs(
    path: str,
    report: InputReport,
    *,
    format: str = "auto",
    text_column: str = "text",
    text_b_column: str = "text_b",
    skip_bad_lines: bool = False,
    fields: tuple[str, ...] = ("text",),
) -> Iterator[tuple[int, Any]]:
    """(line number, raw input) for each record: a text line, or a record whose `text_column` and
    `text_b_column` are renamed to "text" and "text_b" and which has every one of `fields` (the task's) as a
    non-empty string. Blank lines are skipped and counted; a bad record is an error naming file and line,
    or skipped and counted with `skip_bad_lines`. The file is checked now; its records are read as they are
    consumed."""
    fmt = format if format != "auto" else _EXTENSIONS.get(Path(path).suffix.lower(), "text")
    if fmt not in FORMATS:
        raise BertforgeError(f"unknown input format {format!r}; expected one of {', '.join(FORMATS)}")
    if path != "-":
        if not Path(path).is_file():
            raise BertforgeError(f"{path}: no such file" + (" (it is a directory)" if Path(path).is_dir() else ""))
        if os.path.getsize(path) == 0:
            raise BertforgeError(f"{path}: file is empty; expected one input per line")
    return _records(path, fmt, report, {text_column: "text", text_b_column: "text_b"}, fields, skip_bad_lines)


def _records(
    path: str, fmt: str, report: InputReport, names: dict[str, str], fields: tuple[str, ...], skip_bad_lines: bool
) -> Iterator[tuple[int, Any]]:
    def bad(message: str, reason: str = "bad record") -> None:
        if not skip_bad_lines:
            raise BertforgeError(message)
        report.skip(reason, message)

    blanked = 0  # the last invalid line: counted already, then yielded blank by the reader

    def invalid(number: int, message: str) -> None:
        nonlocal blanked
        report.records += 1
        blanked = number
        bad(message, "not UTF-8")

    if fmt == "text":
        records: Iterator = lines(Path(path), path, invalid)
    elif fmt == "jsonl":
        records = json_records(Path(path), path, invalid)
    else:
        records = _table(path, fmt, invalid)
    for number, value in records:
        if fmt == "text" and not value.strip():
            if number != blanked:
                report.records += 1
                report.skip("blank line", f"{path} line {number}")
            continue
        report.records += 1
        if isinstance(value, dict):
            value = _renamed(value, names)
            missing = [f for f in fields if not isinstance(value.get(f), str) or not value[f].strip()]
            if missing:
                column = {new: old for old, new in names.items()}.get(missing[0], missing[0])
                bad(f"{path} line {number}: no text in field {column!r} (fields: {', '.join(value)})")
                continue
        elif not isinstance(value, str):  # a record that could not be parsed
            bad(f"{path} line {number}: {value}")
            continue
        yield number, value
    if report.records == report.skipped["blank line"]:
        raise BertforgeError(f"{path}: no inputs; expected one input per line ({fmt})")


def _renamed(record: dict, names: dict[str, str]) -> dict:
    """`record` with its columns named as the task expects (a column already so named gives way)."""
    if all(old == new for old, new in names.items()):
        return record
    out = {k: v for k, v in record.items() if k not in names.values()}
    return {names.get(k, k): v for k, v in out.items()}


def _table(path: str, fmt: str, invalid) -> Iterator:
    rows = table_rows(Path(path), path, fmt, invalid)
    first = next(rows, None)
    if first is not None:
        yield from named_rows(rows, [n.strip() for n in first[1]])


@contextlib.contextmanager
def jsonl_output(path: str | None, overwrite: bool = False) -> Iterator[TextIO]:
    """A text stream for JSON lines: standard output for None or "-"; else a temporary file renamed over
    `path` when the block succeeds (an existing file only with `overwrite`)."""
    if path in (None, "-"):
        stream = _StandardOutput()
        yield stream
        stream.flush()
        return
    check_output_file(Path(path), overwrite)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


class _StandardOutput:
    """`sys.stdout` (whatever it is when written), where a failed write — a full disk, a closed pipe — is one
    error naming standard output and its errno instead of a traceback."""

    def write(self, text: str) -> int:
        with self._reporting():
            return sys.stdout.write(text)

    def flush(self) -> None:
        with self._reporting():
            sys.stdout.flush()

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise BertforgeError("no space left while writing standard output") from exc
            code = errno.errorcode.get(exc.errno, exc.errno)
            raise BertforgeError(f"cannot write standard output: {exc.strerror} ({code})") from exc


def write_record(stream: TextIO, record: dict[str, Any]) -> None:
    stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def predict_file(
    predictor, path: str, inputs: Iterator[tuple[int, Any]], stream: TextIO, progress: bool = False
) -> None:
    """Predict each (line, raw input) of `path` and write `{"line", ["id",] ...result}` in input order."""
    pending: collections.deque[tuple[int, Any]] = collections.deque()

    def examples() -> Iterator:
        for number, raw in tqdm(inputs, disable=not progress, desc="predict", unit=" inputs"):
            pending.append((number, raw))
            yield predictor.example(raw, str(number), f"{path} line {number}")

    for _, result in predictor.predict_examples(examples()):
        number, raw = pending.popleft()
        head = {"line": number} | ({"id": raw["id"]} if isinstance(raw, dict) and "id" in raw else {})
        write_record(stream, head | predictor.task.record(result))
