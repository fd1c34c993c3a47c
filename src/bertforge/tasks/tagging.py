"""Label schemes (BIO, IOB1, BIOES, BIOS, BMES, IO) as data, and tags ↔ entity spans.

A tag is `O`, or a scheme prefix, `-` and a type (`B-PER`, `M-LOC`, `S-ORG`); a bare prefix (`B`) is a tag
of the empty type. Every scheme is read into spans `(type, start, end_exclusive)` and written back from spans,
so converting between schemes is lossless for valid sequences (IO cannot write two adjacent entities of one
type). A sequence is read in one of two modes:

- "strict": only well-formed chunks are entities (`I-X` after `O` in BIO, a `B-X I-X` never closed by `E-X`
  in BIOES: no entity) — seqeval's `mode="strict"`;
- "conlleval": conlleval.pl's chunk-start/chunk-end rules, where every non-O tag belongs to some entity
  (`I-X` after `O` starts one, a type change ends one). conlleval.pl knows B, I and IOE's E; for S and for
  E followed by B it has no rule, so those follow seqeval's default mode, conlleval's extension to IOBES
  (an E or S always ends an entity, an S always starts one). For B/I/O tags both readers agree exactly.
  BMES's M is read as I.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from bertforge.errors import BertforgeError

# A tag's role in its entity, whatever letter the scheme spells it with.
OUT, BEGIN, INSIDE, END, SINGLE, FOREIGN = range(6)  # FOREIGN: not a tag of the scheme
MODES = ("strict", "conlleval")


def _is(roles: np.ndarray, *wanted: int) -> np.ndarray:
    """roles in `wanted`, by table lookup (np.isin costs more than the rest on short sentences)."""
    table = np.zeros(FOREIGN + 1, dtype=bool)
    table[list(wanted)] = True
    return table[roles]


@dataclass(frozen=True)
class Scheme:
    """The letters a scheme writes an entity with: `begin inside* end` (or `single` for one token)."""

    name: str
    begin: str | None  # first tag of an entity (IO has none)
    inside: str  # the tags after the first
    end: str | None = None  # last tag of a multi-token entity, when the scheme marks it
    single: str | None = None  # a one-token entity, when the scheme marks it
    begin_only_between: bool = False  # IOB1: B- only right after an entity of the same type

    @cached_property
    def roles(self) -> dict[str, int]:
        letters = {self.begin: BEGIN, self.inside: INSIDE, self.end: END, self.single: SINGLE}
        return {letter: role for letter, role in letters.items() if letter is not None}

    def __str__(self) -> str:
        return self.name


SCHEMES: dict[str, Scheme] = {
    "BIO": Scheme("BIO", "B", "I"),  # IOB2
    "IOB1": Scheme("IOB1", "B", "I", begin_only_between=True),  # the original CoNLL-2003 files
    "BIOES": Scheme("BIOES", "B", "I", end="E", single="S"),  # IOBES
    "BIOS": Scheme("BIOS", "B", "I", single="S"),
    "BMES": Scheme("BMES", "B", "M", end="E", single="S"),  # MSRA's msra_train.txt; M = I
    "IO": Scheme("IO", None, "I"),
}
ALIASES = {"IOB2": "BIO", "IOBES": "BIOES"}


def get_scheme(scheme: str | Scheme) -> Scheme:
    if isinstance(scheme, Scheme):
        return scheme
    name = ALIASES.get(scheme.upper(), scheme.upper())
    if name not in SCHEMES:
        raise BertforgeError(f"unknown tag scheme {scheme!r}; expected one of {', '.join([*SCHEMES, *ALIASES])}")
    return SCHEMES[name]


class Span(NamedTuple):
    type: str
    start: int
    end: int  # exclusive


@dataclass(frozen=True)
class TagError:
    """The first tag that breaks its scheme; readers add the file and line (`position` is 0-based)."""

    position: int
    tag: str
    reason: str  # "I-PER without B-PER", "E-LOC alone"

    def __str__(self) -> str:
        return f"{self.reason} at token {self.position}"


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) the way conlleval.pl splits: at the first hyphen, so types may contain hyphens."""
    prefix, _, type_ = tag.partition("-")
    return prefix, type_


def _spell(letter: str, type_: str) -> str:
    return f"{letter}-{type_}" if type_ else letter


class _Vocabulary:
    """Distinct tags parsed once, so 10^5 tags cost a few dict lookups: tag -> (role, type id, conlleval id)."""

    def __init__(self, scheme: Scheme, foreign_ok: bool):
        self.scheme = scheme
        self.foreign_ok = foreign_ok
        self.types: dict[str, int] = {"": 0}  # O has the empty type, as in conlleval
        self.canonical: dict[tuple[str, str], int] = {}
        self.entries: dict[str, tuple[int, int, int]] = {}
        self.add("O")

    def add(self, tag: str) -> None:
        prefix, type_ = split_tag(tag)
        if _foreign(tag, self.scheme) is None:
            role = OUT if tag == "O" else self.scheme.roles[prefix]
        elif self.foreign_ok:
            role = FOREIGN
        else:
            raise BertforgeError(f"tag {_foreign(tag, self.scheme)}")
        type_id = self.types.setdefault(type_, len(self.types))
        self.entries[tag] = role, type_id, self.canonical.setdefault((prefix, type_), len(self.canonical))


def _foreign(tag: str, scheme: Scheme) -> str | None:
    """Why `tag` cannot be a tag of `scheme`, or None."""
    if tag == "O" or split_tag(tag)[0] in scheme.roles:
        return None
    return f"{tag} is not a {scheme} tag (O, or {', '.join(f'{p}-' for p in scheme.roles)} and a type)"


@dataclass(frozen=True)
class TagBatch:
    """Sentences of tags as flat arrays, one `O` appended after each sentence so that no entity crosses one.

    roles, types, tags, codes: (N,) role, type id, conlleval's (prefix, type) id and index into `tag_names`
    of every position; pad: (N,) True at the appended `O`s; starts: (S,) first position of each sentence."""

    scheme: Scheme
    roles: np.ndarray
    types: np.ndarray
    tags: np.ndarray
    codes: np.ndarray
    pad: np.ndarray
    starts: np.ndarray
    type_names: list[str]
    tag_names: list[str]


def tag_batch(tag_seqs: Sequence[Sequence[str]], scheme: str | Scheme, foreign_ok: bool = False) -> TagBatch:
    """Parse every tag once. A tag outside `scheme` raises `BertforgeError`, or with `foreign_ok` gets the
    role FOREIGN (for validation, which reports it)."""
    vocabulary = _Vocabulary(get_scheme(scheme), foreign_ok)
    flat = [tag for seq in tag_seqs for tag in seq]
    for tag in sorted(set(flat) - vocabulary.entries.keys()):  # sorted: ids do not depend on hash order
        vocabulary.add(tag)
    tag_names = list(vocabulary.entries)
    table = np.array([vocabulary.entries[tag] for tag in tag_names], dtype=np.int64)  # (V, 3)
    index = {tag: i for i, tag in enumerate(tag_names)}
    ends = np.cumsum([len(seq) for seq in tag_seqs], dtype=np.int64)
    codes = np.fromiter((index[tag] for tag in flat), dtype=np.int64, count=len(flat))
    codes = np.insert(codes, ends, index["O"])  # (N,) one O after each sentence
    pad = np.zeros(len(codes), dtype=bool)
    pad[ends + np.arange(len(ends))] = True
    starts = np.concatenate([[0], ends[:-1] + np.arange(1, len(ends))]) if len(ends) else ends
    roles, types, tags = table[codes].T
    return TagBatch(vocabulary.scheme, roles, types, tags, codes, pad, starts, list(vocabulary.types), tag_names)


@dataclass(frozen=True)
class SpanArrays:
    """Entities of a batch: sentence index, start, end (exclusive, within the sentence) and type id, (E,) each."""

    sentence: np.ndarray
    start: np.ndarray
    end: np.ndarray
    type: np.ndarray


def _previous(values: np.ndarray, fill: int) -> np.ndarray:
    return np.concatenate([[fill], values[:-1]])


def _continues(batch: TagBatch) -> np.ndarray:
    """(N,) True where a tag carries on the entity of the tag before it in a well-formed way."""
    prev_role, role = _previous(batch.roles, OUT), batch.roles
    same = _previous(batch.types, 0) == batch.types
    return _is(role, INSIDE, END) & _is(prev_role, BEGIN, INSIDE) & same


def _runs(batch: TagBatch) -> tuple[np.ndarray, np.ndarray]:
    """Maximal well-formed-so-far runs: (start, end_exclusive) of each non-O tag that does not continue."""
    continues = _continues(batch)
    breaks = np.flatnonzero(~continues)
    begins = np.flatnonzero(~continues & (batch.roles != OUT))
    return begins, breaks[np.searchsorted(breaks, begins, side="right")]


def _run_problems(batch: TagBatch, begins: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each run, whether its first tag may open an entity and whether its last may close one."""
    scheme, roles = batch.scheme, batch.roles
    first, last, length = roles[begins], roles[ends - 1], ends - begins
    prev_role, prev_type = _previous(roles, OUT)[begins], _previous(batch.types, 0)[begins]
    after_same = _is(prev_role, BEGIN, INSIDE) & (prev_type == batch.types[begins])
    if scheme.begin is None:  # IO: every run is an entity
        opens = first == INSIDE
    elif scheme.begin_only_between:  # IOB1: I opens an entity, B only right after one of the same type
        opens = (first == INSIDE) | ((first == BEGIN) & after_same)
    else:
        opens = (first == BEGIN) | (first == SINGLE)
    if scheme.single is not None:  # a one-token entity must be written with the single tag
        opens &= (first == SINGLE) == (length == 1)
    closes = last == END if scheme.end is not None else np.ones(len(begins), dtype=bool)
    closes |= (length == 1) & (first == SINGLE)
    if scheme.end is not None:  # a lone B is an opening problem ("alone"), not a closing one
        closes |= (length == 1) & (first == BEGIN)
    return opens, closes


def batch_spans(batch: TagBatch, mode: str = "strict") -> SpanArrays:
    """Entities of every sentence of `batch`, read in `mode` ("strict" or "conlleval", see the module doc)."""
    if mode == "strict":
        begins, ends = _runs(batch)
        opens, closes = _run_problems(batch, begins, ends)
        begins, ends = begins[opens & closes], ends[opens & closes]
    elif mode == "conlleval":
        begins, ends = _conlleval_chunks(batch)
    else:
        raise BertforgeError(f"unknown span mode {mode!r}; expected one of {', '.join(MODES)}")
    sentence = np.searchsorted(batch.starts, begins, side="right") - 1
    offset = batch.starts[sentence] if len(sentence) else sentence
    return SpanArrays(sentence, begins - offset, ends - offset, batch.types[begins])


def _conlleval_chunks(batch: TagBatch) -> tuple[np.ndarray, np.ndarray]:
    """conlleval.pl's startOfChunk/endOfChunk, with seqeval's rules for E and S (see the module doc)."""
    prev, tag = _previous(batch.roles, OUT), batch.roles
    type_changes = _previous(batch.types, 0) != batch.types
    closing = _is(prev, END, SINGLE)
    ends_before = (prev != OUT) & (closing | (_is(prev, BEGIN, INSIDE) & _is(tag, BEGIN, SINGLE, OUT)) | type_changes)
    starts_here = (tag != OUT) & (
        _is(tag, BEGIN, SINGLE) | ((closing | (prev == OUT)) & _is(tag, INSIDE, END)) | type_changes
    )
    # Every non-O tag belongs to a chunk and a chunk ends exactly where the next one starts or an O comes,
    # so the k-th start pairs with the k-th end.
    return np.flatnonzero(starts_here), np.flatnonzero(ends_before)


def spans_per_sentence(
    tag_seqs: Sequence[Sequence[str]], scheme: str | Scheme, mode: str = "strict"
) -> list[list[Span]]:
    """Entities of every sentence as `Span(type, start, end_exclusive)`, in order, read in one pass."""
    batch = tag_batch(tag_seqs, scheme)
    found = batch_spans(batch, mode)
    result: list[list[Span]] = [[] for _ in tag_seqs]
    for sentence, type_, start, end in zip(found.sentence, found.type, found.start, found.end, strict=True):
        result[sentence].append(Span(batch.type_names[type_], int(start), int(end)))
    return result


def spans(tags: Sequence[str], scheme: str | Scheme, mode: str = "strict") -> list[Span]:
    """Entities of one tag sequence as `Span(type, start, end_exclusive)`, in order."""
    return spans_per_sentence([tags], scheme, mode)[0]


def tags_from_spans(entities: Sequence[tuple[str, int, int]], length: int, scheme: str | Scheme) -> list[str]:
    """The tag sequence of `length` tokens holding `entities` (type, start, end_exclusive) in `scheme`."""
    scheme = get_scheme(scheme)
    tags = ["O"] * length
    previous = None
    for type_, start, end in sorted(entities, key=lambda span: span[1]):
        if not 0 <= start < end <= length:
            raise BertforgeError(f"entity {type_} [{start}, {end}) does not fit in {length} tokens")
        if previous is not None and start < previous[2]:
            raise BertforgeError(f"entities {type_} [{start}, {end}) and {previous[0]} overlap")
        touching = previous is not None and previous[2] == start and previous[0] == type_
        if touching and scheme.begin is None:
            raise BertforgeError(f"{scheme} cannot write two adjacent {type_} entities (at token {start})")
        if scheme.begin is None or (scheme.begin_only_between and not touching):
            first = scheme.inside
        elif end - start == 1 and scheme.single is not None:
            first = scheme.single
        else:
            first = scheme.begin
        tags[start] = _spell(first, type_)
        for i in range(start + 1, end):
            tags[i] = _spell(scheme.inside, type_)
        if end - start > 1 and scheme.end is not None:
            tags[end - 1] = _spell(scheme.end, type_)
        previous = (type_, start, end)
    return tags


def invalid_tags(tag_seqs: Sequence[Sequence[str]], scheme: str | Scheme) -> list[tuple[int, TagError]]:
    """(sentence index, its first invalid tag) for every sentence that breaks `scheme`, in one pass over all
    sentences, so a reader can name the file and line of the first and `--repair-tags` can count them."""
    batch = tag_batch(tag_seqs, scheme, foreign_ok=True)
    begins, ends = _runs(batch)
    opens, closes = _run_problems(batch, begins, ends)
    cut = batch.roles[ends] == FOREIGN  # a run cut short by a foreign tag is not to blame for its length
    closes |= cut
    if batch.scheme.single is not None:
        opens |= cut & (batch.roles[begins] == BEGIN)
    at = np.concatenate([begins[~opens], ends[~closes] - 1])
    closing = np.concatenate([np.zeros(np.sum(~opens), dtype=bool), np.ones(np.sum(~closes), dtype=bool)])
    order = np.lexsort((closing, at))  # by position, an opening problem before a closing one at the same tag
    at, closing = at[order], closing[order]
    sentence = np.searchsorted(batch.starts, at, side="right") - 1
    _, first = np.unique(sentence, return_index=True)
    return [
        (
            int(sentence[i]),
            TagError(
                int(at[i] - batch.starts[sentence[i]]),
                batch.tag_names[batch.codes[at[i]]],
                _closing_problem(batch, int(at[i])) if closing[i] else _opening_problem(batch, int(at[i])),
            ),
        )
        for i in first
    ]


def validate(tags: Sequence[str], scheme: str | Scheme) -> TagError | None:
    """The first tag of `tags` that is invalid in `scheme`, with the reason, or None for a valid sequence."""
    found = invalid_tags([tags], scheme)
    return found[0][1] if found else None


def _opening_problem(batch: TagBatch, at: int) -> str:
    scheme, role = batch.scheme, int(batch.roles[at])
    tag, type_ = batch.tag_names[batch.codes[at]], batch.type_names[batch.types[at]]
    before = batch.tag_names[batch.codes[at - 1]] if at > 0 and batch.roles[at - 1] != OUT else None
    if role == FOREIGN:
        return _foreign(tag, scheme)
    if role == BEGIN and scheme.begin_only_between:
        return f"{tag} not right after a {type_ or 'typeless'} entity (IOB1 writes B- only between two of one type)"
    if role == BEGIN:
        return f"{tag} alone (a one-token entity is {_spell(scheme.single, type_)})"
    if before is not None:
        return f"{tag} after {before}"
    if role == END:
        return f"{tag} alone"
    return f"{tag} without {_spell(scheme.begin, type_)}"


def _closing_problem(batch: TagBatch, at: int) -> str:
    tag, type_ = batch.tag_names[batch.codes[at]], batch.type_names[batch.types[at]]
    return f"entity ends on {tag} instead of {_spell(batch.scheme.end, type_)}"


def repair(tags: Sequence[str], scheme: str | Scheme) -> list[str]:
    """The conlleval reading of `tags` written back validly (`I-X` after `O` becomes `B-X`, ...)."""
    return tags_from_spans(spans(tags, scheme, "conlleval"), len(tags), scheme)


def detect_scheme(tag_seqs: Sequence[Sequence[str]]) -> str:
    """The scheme the tags are written in, from the prefixes used (and, for B/I/O, where B- appears).

    M- means BMES; E- (or S- alone) BIOES; S- with B-/I- but no E- BIOS; I- without B- IO; B- and I-:
    BIO unless the tags break BIO more often than IOB1 (B- only between same-type entities, as in the
    original CoNLL-2003 files). Entities of one or two tokens written B/E/S look the same in BIOES and BMES:
    that is BIOES."""
    prefixes = set()
    for seq in tag_seqs:
        for tag in seq:
            prefix = "O" if tag == "O" else split_tag(tag)[0]
            if prefix not in ("B", "I", "M", "E", "S", "O"):
                raise BertforgeError(f"tag {tag!r} is not O or one of B-, I-, M-, E-, S- and a type")
            prefixes.add(prefix)
    if "M" in prefixes:
        if "I" in prefixes:
            raise BertforgeError("the tags use both M- and I-: no scheme has both (BMES has M-, BIOES has I-)")
        return "BMES"
    if "E" in prefixes or ("S" in prefixes and prefixes <= {"S", "O"}):
        return "BIOES"
    if "S" in prefixes:
        return "BIOS"
    if "B" not in prefixes:
        return "IO"
    if "I" not in prefixes:
        return "BIO"
    batch = tag_batch(tag_seqs, "BIO")
    after_same = _is(_previous(batch.roles, OUT), BEGIN, INSIDE) & (_previous(batch.types, 0) == batch.types)
    bio_errors = np.sum((batch.roles == INSIDE) & ~after_same)  # I- opening an entity
    iob1_errors = np.sum((batch.roles == BEGIN) & ~after_same)  # B- opening one that follows no same-type entity
    return "IOB1" if iob1_errors < bio_errors else "BIO"
