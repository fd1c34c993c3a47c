"""Raw pretraining text: find the input files, cut them into chunks of whole documents, read a chunk.

Input format (Google's and the model zoo's): one sentence per line, a blank line between documents. A file
boundary also ends a document. Chunks are planned from file sizes and a byte budget alone, so the plan (and
so every output) is the same whatever the number of workers, and a worker reads only its own byte range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.errors import BertforgeError

MAX_LINE_CHARS = 100_000  # longer "sentences" are skipped and counted: they are not text a model can use
_BINARY_SNIFF = 8192


@dataclass(frozen=True)
class Chunk:
    """A byte range of one input file that starts and ends on a document boundary."""

    index: int
    path: str
    start: int
    end: int


@dataclass
class ReadReport:
    """What reading skipped, so nothing is dropped silently."""

    lines: int = 0
    documents: int = 0
    invalid_utf8: int = 0
    too_long: int = 0
    examples: list[str] = field(default_factory=list)  # "file:line: reason" for the first few skips

    def skip(self, path: str, line_no: int, reason: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(f"{path}:{line_no}: {reason}")

    def merge(self, other: ReadReport) -> None:
        self.lines += other.lines
        self.documents += other.documents
        self.invalid_utf8 += other.invalid_utf8
        self.too_long += other.too_long
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])


def find_input_files(inputs: list[str | Path]) -> list[Path]:
    """Files named directly, plus every regular file under named directories (sorted, hidden ones skipped)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))
            if not found:
                raise BertforgeError(f"{item}: directory holds no input files")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise BertforgeError(f"{item}: no such file or directory")
    for path in files:
        with open(path, "rb") as f:
            head = f.read(_BINARY_SNIFF)
        if b"\x00" in head:
            raise BertforgeError(f"{path}: looks like a binary file (NUL bytes), expected UTF-8 text")
    if not any(p.stat().st_size for p in files):
        raise BertforgeError(f"input files are all empty: {', '.join(map(str, files[:5]))}")
    return files


def plan_chunks(files: list[Path], chunk_bytes: int) -> list[Chunk]:
    """Cut each file into ranges of about `chunk_bytes`, each ending after a blank line (or at end of file)."""
    chunks: list[Chunk] = []
    for path in files:
        size = path.stat().st_size
        start = 0
        with open(path, "rb") as f:
            while start < size:
                end = _next_document_boundary(f, start + chunk_bytes, size)
                chunks.append(Chunk(len(chunks), str(path), start, end))
                start = end
    return chunks


def _next_document_boundary(f, position: int, size: int) -> int:
    """Offset just after the first blank line at or after `position` (or the file size)."""
    if position >= size:
        return size
    f.seek(position)
    f.readline()  # finish the current line
    while True:
        line = f.readline()
        if not line:
            return size
        if not line.strip():
            return f.tell()


def read_documents(chunk: Chunk) -> tuple[list[list[str]], ReadReport]:
    """The chunk's documents as lists of stripped, non-empty lines; bad lines are skipped and counted."""
    report = ReadReport()
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        data = f.read(chunk.end - chunk.start)
    first_line = 1 + _count_lines_before(chunk)
    documents: list[list[str]] = [[]]
    for n, raw in enumerate(data.split(b"\n")):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            report.invalid_utf8 += 1
            report.skip(chunk.path, first_line + n, f"invalid UTF-8 at byte {exc.start} of the line")
            continue
        if not line:
            if documents[-1]:
                documents.append([])
            continue
        if len(line) > MAX_LINE_CHARS:
            report.too_long += 1
            report.skip(chunk.path, first_line + n, f"line of {len(line)} characters (limit {MAX_LINE_CHARS})")
            continue
        report.lines += 1
        documents[-1].append(line)
    if not documents[-1]:
        documents.pop()
    report.documents = len(documents)
    return documents, report


def _count_lines_before(chunk: Chunk) -> int:
    """Line number offset of a chunk, for error messages (only computed per chunk, cheap next to tokenizing)."""
    if chunk.start == 0:
        return 0
    count = 0
    with open(chunk.path, "rb") as f:
        remaining = chunk.start
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            count += block.count(b"\n")
            remaining -= len(block)
    return count


def total_bytes(files: list[Path]) -> int:
    return sum(os.path.getsize(p) for p in files)
