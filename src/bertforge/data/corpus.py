"""Raw pretraining text: find the input files, cut them into chunks of whole documents, read a chunk.

Input format (Google's and the model zoo's): one sentence per line, a blank line between documents. A file
boundary also ends a document. Chunks are planned from the files' bytes and a byte budget alone, so the plan
(and so every output) is the same whatever the number of workers, and a worker reads only its own byte range.

A document much longer than a chunk (a book, or a sentence-per-line corpus with no blank lines at all) is
cut at a line end into pieces of about a chunk, and each piece is a document of its own. Google's algorithm
needs all of a document at hand (a random segment B may start anywhere in it), so without the cut one
document would be one unit of work: no parallelism and memory growing with the document. The pieces of a
document know it by the index of the chunk where it begins (`Chunk.head`, `Chunk.tail`), so that they can
share what Google draws once per document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.errors import BertforgeError

MAX_LINE_CHARS = 100_000  # longer "sentences" are skipped and counted: they are not text a model can use
_BINARY_SNIFF = 8192
# A line end followed by a line that bytes.strip() empties (a document break); group 1 is that line, so matches
# never overlap a following blank line.
_BLANK_LINE = re.compile(rb"\n(?=([ \t\r\v\f]*\n))")


@dataclass(frozen=True)
class Chunk:
    """A byte range of one input file that starts and ends on a document boundary, or inside a document
    longer than a chunk (a cut)."""

    index: int
    path: str
    start: int
    end: int
    head: int | None = None  # starts inside a document cut before it: the index of the chunk where it begins
    tail: int | None = None  # ends inside a document, continued by the next chunk: likewise


@dataclass
class ReadReport:
    """What reading skipped, so nothing is dropped silently."""

    lines: int = 0
    documents: int = 0
    invalid_utf8: int = 0
    too_long: int = 0
    examples: list[str] = field(default_factory=list)  # "file:line: reason" for the first few skips

    def skip(self, chunk: Chunk, n: int, reason: str) -> None:
        """Keep the first few skips of line `n` of `chunk` as examples (the caller counts them)."""
        if len(self.examples) < 5:
            self.examples.append(f"{chunk.path}:{_line_number(chunk, n)}: {reason}")

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
    """Cut each file into ranges of about `chunk_bytes`: each ends after the first blank line past its
    budget, or, inside a document longer than `chunk_bytes`, after the line that reaches the budget. A
    document of at most `chunk_bytes` is never cut. The pieces of a cut document name the chunk where it
    begins (`head`, `tail`)."""
    chunks: list[Chunk] = []
    for path in files:
        size = path.stat().st_size
        start, head = 0, None  # a file boundary ends a document
        with open(path, "rb") as f:
            while start < size:
                end, cut = _chunk_end(f, start, chunk_bytes, size)
                index = len(chunks)
                tail = _cut_document(f, start, end, head, index) if cut else None
                chunks.append(Chunk(index, str(path), start, end, head, tail))
                start, head = end, tail
    return chunks


def _chunk_end(f, start: int, chunk_bytes: int, size: int) -> tuple[int, bool]:
    """Where the chunk from `start` ends, and whether that is inside a document: just after the first blank
    line within `chunk_bytes` after the line at start + chunk_bytes; failing that, just after that line (a
    cut), unless the document holding it runs to the end of the file in less than `chunk_bytes` (then at the
    end of the file)."""
    if start + chunk_bytes >= size:
        return size, False
    f.seek(start + chunk_bytes)
    f.readline()  # finish the current line
    line_end = f.tell()
    if line_end >= size:
        return size, False
    f.seek(line_end - 1)
    ahead = f.read(chunk_bytes + 1)  # from the current line's newline on
    blank = _BLANK_LINE.search(ahead)
    if blank:
        return line_end - 1 + blank.end(1), False
    if line_end - 1 + len(ahead) < size:
        return line_end, True  # the document goes on for more than another chunk
    f.seek(start)
    before = b"\n" + f.read(line_end - start)  # the newline stands for the line end before the chunk
    document_start = start - 1 + max((m.end(1) for m in _BLANK_LINE.finditer(before)), default=1)
    return (line_end, True) if size - document_start > chunk_bytes else (size, False)


def _cut_document(f, start: int, end: int, head: int | None, index: int) -> int | None:
    """The chunk that holds the beginning of the document cut at `end`, for chunk `index` (bytes start:end,
    starting inside the document that began in chunk `head`, if any); None if the last line is blank after
    all (the cut is a document break)."""
    f.seek(start)
    data = b"\n" + f.read(end - start)  # the newline stands for the line end before the chunk
    last_break = max((m.end(1) for m in _BLANK_LINE.finditer(data)), default=0)
    if last_break == len(data):
        return None
    return head if head is not None and not last_break else index


def read_documents(chunk: Chunk) -> tuple[list[list[str]], dict[int, int], ReadReport]:
    """The chunk's documents as lists of stripped, non-empty lines; which of them are pieces of a cut document
    (position -> the index of the chunk where that document begins); bad lines are skipped and counted."""
    report = ReadReport()
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        data = f.read(chunk.end - chunk.start)
    documents: list[list[str]] = [[]]
    first_continues = None  # whether documents[0] got lines of the document the chunk starts inside
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # what follows the last line end: no line at all
    for n, raw in enumerate(lines):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            report.invalid_utf8 += 1
            report.skip(chunk, n, f"invalid UTF-8 at byte {exc.start} of the line")
            continue
        if not line:
            if first_continues is None:
                first_continues = bool(documents[0])
            if documents[-1]:
                documents.append([])
            continue
        if len(line) > MAX_LINE_CHARS:
            report.too_long += 1
            report.skip(chunk, n, f"line of {len(line)} characters (limit {MAX_LINE_CHARS})")
            continue
        report.lines += 1
        documents[-1].append(line)
    pieces = {}
    if chunk.head is not None and (bool(documents[0]) if first_continues is None else first_continues):
        pieces[0] = chunk.head
    if not documents[-1]:
        documents.pop()
    elif chunk.tail is not None:
        pieces[len(documents) - 1] = chunk.tail
    report.documents = len(documents)
    return documents, pieces, report


def _line_number(chunk: Chunk, n: int) -> int:
    """The file's line number of the chunk's line `n` (from 0). Counted only for a skip example: it reads the
    file up to the chunk, which for every chunk of a huge file would be quadratic."""
    count = 1 + n
    with open(chunk.path, "rb") as f:
        remaining = chunk.start
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            count += block.count(b"\n")
            remaining -= len(block)
    return count
