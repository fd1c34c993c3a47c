"""Chunk planning: whole documents per chunk, long documents cut into pieces, line numbers of skipped lines."""

import random

from bertforge.data.corpus import plan_chunks, read_documents

BLANKS = [b"\n", b" \n", b"\t \r\n", b"\n\n", b"\x0c\n"]  # lines bytes.strip() empties: all document breaks


def write_documents(path, rng, documents, max_lines):
    """Documents of 1..max_lines lines of 5..80 bytes, each followed by one of the BLANKS; the offsets just
    after each document's first blank line."""
    ends = []
    with open(path, "wb") as f:
        for _ in range(documents):
            for _ in range(rng.randint(1, max_lines)):
                f.write(b"w" * rng.randint(5, 80) + rng.choice([b"\n", b"\r\n"]))
            blank = rng.choice(BLANKS)
            ends.append(f.tell() + blank.index(b"\n") + 1)
            f.write(blank)
    return ends


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


def test_documents_that_fit_in_a_chunk_are_never_cut(tmp_path):
    rng = random.Random(0)
    for trial in range(20):
        path = tmp_path / f"{trial}.txt"
        document_ends = set(write_documents(path, rng, documents=rng.randint(1, 60), max_lines=12))
        chunk_bytes = rng.randint(1000, 3000)  # documents are at most 12 * 82 + 4 bytes
        chunks = plan_chunks([path], chunk_bytes)
        assert [c.end for c in chunks] == readline_plan(path, chunk_bytes)
        assert {c.end for c in chunks} <= document_ends | {path.stat().st_size}
        assert [c.start for c in chunks] == [0] + [c.end for c in chunks[:-1]]


def test_a_document_longer_than_a_chunk_is_cut_at_line_ends(tmp_path):
    rng = random.Random(1)
    lines = [" ".join(rng.choices("abc def ghi jkl".split(), k=rng.randint(1, 30))) for _ in range(5000)]
    path = tmp_path / "book.txt"
    path.write_text("\n".join(lines) + "\n\nA short document.\nOf two lines.\n")
    chunks = plan_chunks([path], 10_000)
    assert len(chunks) >= 10
    data = path.read_bytes()
    for chunk in chunks[:-1]:
        assert data[chunk.end - 1 : chunk.end] == b"\n" and chunk.end - chunk.start <= 2 * 10_000 + 200
    pieces = [read_documents(chunk)[0] for chunk in chunks]
    assert [len(p) for p in pieces[:-1]] == [1] * (len(chunks) - 1)  # each piece of the book is one document
    assert [line for p in pieces for doc in p for line in doc] == [*lines, "A short document.", "Of two lines."]
    assert pieces[-1][-1] == ["A short document.", "Of two lines."]  # the document after the book is whole


def test_skipped_lines_are_reported_with_their_line_number_in_any_chunk(tmp_path):
    path = tmp_path / "mixed.txt"
    good = b"A sentence of the document.\nAnd another one.\n\n"
    path.write_bytes(good * 3000 + b"caf\xe9\n" + good)
    chunks = plan_chunks([path], 20_000)
    assert len(chunks) > 3
    reports = [read_documents(chunk)[1] for chunk in chunks]
    assert sum(r.invalid_utf8 for r in reports) == 1
    assert [e for r in reports for e in r.examples] == [f"{path}:9001: invalid UTF-8 at byte 3 of the line"]
