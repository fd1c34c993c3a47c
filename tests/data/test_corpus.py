"""Chunk planning: whole documents per chunk, long documents cut into pieces, line numbers of skipped lines."""

import random

import pytest

from bertforge.data.corpus import plan_chunks, read_documents

BLANKS = [b"\n", b" \n", b"\t \r\n", b"\n\n", b"\x0c\n"]  # lines bytes.strip() empties: all document breaks


def write_documents(path, rng, documents, max_lines):
    """Documents of 1..max_lines lines of 5..80 bytes, each followed by one of the BLANKS (the last one, half
    the time, by none); per document, its start and the offset just after its first blank line."""
    spans = []
    with open(path, "wb") as f:
        for i in range(documents):
            start = f.tell()
            for _ in range(rng.randint(1, max_lines)):
                f.write(b"w" * rng.randint(5, 80) + rng.choice([b"\n", b"\r\n"]))
            blank = b"" if i == documents - 1 and rng.random() < 0.5 else rng.choice(BLANKS)
            spans.append((start, f.tell() + blank.find(b"\n") + 1))
            f.write(blank)
    return spans


def readline_plan(path, chunk_bytes):
    """The rule for documents that fit in a chunk, line by line: end after the first blank line that starts
    after the line holding start + chunk_bytes."""
    size, ends, start = path.stat().st_size, [], 0
    with open(path, "rb") as f:
        while start < size:
            end = size
            if start + chunk_bytes < size:
                f.seek(start + chunk_bytes)
                f.readline()
                for line in iter(f.readline, b""):
                    if not line.strip():
                        end = f.tell()
                        break
            ends.append(end)
            start = end
    return ends


@pytest.mark.parametrize("max_lines", [12, 60, 200], ids=["documents-fit", "some-longer", "many-pieces"])
def test_only_documents_longer_than_a_chunk_are_cut_at_line_ends(tmp_path, max_lines):
    rng = random.Random(max_lines)
    for trial in range(30):
        path = tmp_path / f"{trial}.txt"
        documents = write_documents(path, rng, documents=rng.randint(1, 60), max_lines=max_lines)
        chunk_bytes = rng.randint(1000, 3000)  # a document of 12 lines is at most 12 * 82 + 4 bytes
        chunks = plan_chunks([path], chunk_bytes)
        data = path.read_bytes()
        assert [c.start for c in chunks] == [0] + [c.end for c in chunks[:-1]] and chunks[-1].end == len(data)
        assert all(c.end - c.start <= 2 * chunk_bytes + 100 for c in chunks)
        for start, end in documents:
            inside = [c.end for c in chunks if start < c.end < end]
            assert not inside or end - start > chunk_bytes  # only a longer document is cut
            assert all(data[cut - 1 : cut] == b"\n" for cut in inside)  # at line ends
        # A chunk that starts (head) or ends (tail) inside a document names the chunk holding its first byte.
        begins = {start: next(c.index for c in chunks if c.start <= start < c.end) for start, _ in documents}
        for c in chunks:
            assert c.head == next((begins[s] for s, e in documents if s < c.start < e), None)
            assert c.tail == next((begins[s] for s, e in documents if s < c.end < e), None)
        if max_lines == 12:
            assert [c.end for c in chunks] == readline_plan(path, chunk_bytes)


def test_a_document_longer_than_a_chunk_is_cut_at_line_ends(tmp_path):
    rng = random.Random(1)
    lines = [" ".join(rng.choices("abc def ghi jkl".split(), k=rng.randint(1, 30))) for _ in range(5000)]
    path = tmp_path / "book.txt"
    path.write_text("\n".join(lines) + "\n\nA short document.\nOf two lines.\n")
    chunks = plan_chunks([path], 10_000)
    assert len(chunks) >= 10
    data = path.read_bytes()
    cuts = [c for c in chunks if c.end < data.index(b"\n\n")]  # the pieces that end inside the book
    assert len(cuts) == len(chunks) - 2
    assert all(data[c.end - 1 : c.end] == b"\n" and c.end - c.start <= 10_000 + 200 for c in cuts)  # + a line
    read = [read_documents(chunk) for chunk in chunks]
    pieces = [documents for documents, _, _ in read]
    assert [len(p) for p in pieces[:-1]] == [1] * (len(chunks) - 1)  # each piece of the book is one document
    assert [line for p in pieces for doc in p for line in doc] == [*lines, "A short document.", "Of two lines."]
    assert pieces[-1][-1] == ["A short document.", "Of two lines."]  # the document after the book is whole
    # Every piece of the book names the chunk where the book begins; the short document is no piece.
    assert [names for _, names, _ in read] == [{0: 0}] * (len(chunks) - 1) + [{}]
    assert [(c.head, c.tail) for c in chunks] == [(None, 0)] + [(0, 0)] * (len(chunks) - 3) + [(0, None), (None, None)]
    # The same book at the end of the file: cut all the same, its last piece shorter than a chunk.
    last = tmp_path / "last.txt"
    last.write_text("A short document.\nOf two lines.\n\n" + "\n".join(lines) + "\n")
    tail = plan_chunks([last], 10_000)
    assert len(tail) == len(chunks) and tail[-1].end - tail[-1].start < 10_000


def test_skipped_lines_are_reported_with_their_line_number_in_any_chunk(tmp_path):
    path = tmp_path / "mixed.txt"
    good = b"A sentence of the document.\nAnd another one.\n\n"
    path.write_bytes(good * 3000 + b"caf\xe9\n" + good)
    chunks = plan_chunks([path], 20_000)
    assert len(chunks) > 3
    reports = [read_documents(chunk)[2] for chunk in chunks]
    assert sum(r.invalid_utf8 for r in reports) == 1
    assert [e for r in reports for e in r.examples] == [f"{path}:9001: invalid UTF-8 at byte 3 of the line"]


def test_a_cut_that_falls_on_a_blank_line_is_a_document_break(tmp_path):
    """The budget ends on the blank line after document 1 and no blank line follows within a chunk: the
    chunk ends there as at a cut, but document 2 begins after it, so no piece of it names chunk 0."""
    path = tmp_path / "two.txt"
    path.write_bytes(b"xxxxxxxxx\n" * 30 + b"\n" + b"yyyyyyyyy\n" * 100)
    chunks = plan_chunks([path], 300)
    assert [(c.start, c.end) for c in chunks][:2] == [(0, 301), (301, 611)]
    assert [(c.head, c.tail) for c in chunks] == [(None, None), (None, 1), (1, 1), (1, 1), (1, None)]
    assert [read_documents(c)[1] for c in chunks] == [{}] + [{0: 1}] * 4
