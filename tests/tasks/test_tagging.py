"""Tag schemes: conversions through spans round-trip (property test), strict and conlleval readings equal
seqeval's strict and default modes on random (invalid-containing) sequences, validation names the first bad
tag, repair makes the conlleval reading valid, and the scheme of real-looking files is detected."""

import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

from bertforge.errors import BertforgeError
from bertforge.tasks.tagging import (
    SCHEMES,
    Span,
    TagError,
    detect_scheme,
    get_scheme,
    invalid_tags,
    repair,
    spans,
    spans_per_sentence,
    tags_from_spans,
    validate,
)

TYPES = ("PER", "LOC", "ORG-GOV", "")  # a type with a hyphen (conlleval splits at the first) and none at all

# One sentence in every scheme: PER PER (adjacent), a one-token LOC, a three-token ORG.
SENTENCE = {
    "BIO": "B-PER I-PER B-PER O B-LOC O B-ORG I-ORG I-ORG",
    "IOB1": "I-PER I-PER B-PER O I-LOC O I-ORG I-ORG I-ORG",
    "BIOES": "B-PER E-PER S-PER O S-LOC O B-ORG I-ORG E-ORG",
    "BIOS": "B-PER I-PER S-PER O S-LOC O B-ORG I-ORG I-ORG",
    "BMES": "B-PER E-PER S-PER O S-LOC O B-ORG M-ORG E-ORG",
}
SENTENCE_SPANS = [Span("PER", 0, 2), Span("PER", 2, 3), Span("LOC", 4, 5), Span("ORG", 6, 9)]


@pytest.mark.parametrize("scheme", SENTENCE)
def test_every_scheme_reads_and_writes_the_same_entities(scheme):
    tags = SENTENCE[scheme].split()
    assert validate(tags, scheme) is None
    assert spans(tags, scheme) == spans(tags, scheme, "conlleval") == SENTENCE_SPANS
    for other in SENTENCE:
        assert tags_from_spans(SENTENCE_SPANS, len(tags), other) == SENTENCE[other].split()
    assert tags_from_spans(SENTENCE_SPANS[2:], 9, "IO") == "O O O O I-LOC O I-ORG I-ORG I-ORG".split()


def test_scheme_names_and_aliases():
    assert get_scheme("iob2") is SCHEMES["BIO"] and get_scheme("IOBES") is SCHEMES["BIOES"]
    with pytest.raises(BertforgeError, match="unknown tag scheme 'BILUO'"):
        get_scheme("BILUO")


@st.composite
def entity_layouts(draw, allow_adjacent_same_type=True):
    """A sentence length and a valid set of entities: gaps of O, entities of 1-4 tokens, any types."""
    entities, position = [], draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 6))):
        type_, length = draw(st.sampled_from(TYPES)), draw(st.integers(1, 4))
        if not allow_adjacent_same_type and entities and entities[-1].end == position and entities[-1].type == type_:
            position += 1
        entities.append(Span(type_, position, position + length))
        position += length + draw(st.integers(0, 2))
    return entities, position + draw(st.integers(0, 2))


@settings(max_examples=200, deadline=None)
@given(entity_layouts())
def test_schemes_round_trip_through_spans(layout):
    entities, length = layout
    for scheme in ("BIO", "IOB1", "BIOES", "BIOS", "BMES"):
        tags = tags_from_spans(entities, length, scheme)
        assert len(tags) == length
        assert validate(tags, scheme) is None
        assert spans(tags, scheme) == spans(tags, scheme, "conlleval") == entities
        for other in ("BIO", "IOB1", "BIOES", "BIOS", "BMES"):
            converted = tags_from_spans(spans(tags, scheme), length, other)
            assert tags_from_spans(spans(converted, other), length, scheme) == tags


@settings(max_examples=100, deadline=None)
@given(entity_layouts(allow_adjacent_same_type=False))
def test_io_round_trips_without_adjacent_entities_of_one_type(layout):
    entities, length = layout
    tags = tags_from_spans(entities, length, "IO")
    assert spans(tags, "IO") == spans(tags, "IO", "conlleval") == entities
    assert tags_from_spans(spans(tags, "IO"), length, "BIOES") == tags_from_spans(entities, length, "BIOES")


def test_writing_spans_that_do_not_fit_is_an_error():
    with pytest.raises(BertforgeError, match=r"PER \[2, 5\) does not fit in 4 tokens"):
        tags_from_spans([("PER", 2, 5)], 4, "BIO")
    with pytest.raises(BertforgeError, match="overlap"):
        tags_from_spans([("PER", 0, 2), ("LOC", 1, 3)], 4, "BIO")
    with pytest.raises(BertforgeError, match="IO cannot write two adjacent PER entities"):
        tags_from_spans([("PER", 0, 2), ("PER", 2, 3)], 4, "IO")


def random_tags(rng, prefixes, length, types=("PER", "LOC", "ORG-GOV")):
    """Random tags, most of them invalid sequences; O as often as any other tag."""
    vocabulary = ["O", "O"] + [f"{p}-{t}" for p in prefixes for t in types]
    return [rng.choice(vocabulary) for _ in range(length)]


@pytest.mark.parametrize(("scheme", "reference", "prefixes"), [("BIO", IOB2, "BI"), ("BIOES", IOBES, "BIES")])
@pytest.mark.parametrize("seed", range(5))
def test_readings_equal_seqeval_strict_and_default_modes(scheme, reference, prefixes, seed):
    rng = random.Random(seed)
    sentences = [random_tags(rng, prefixes, rng.randint(0, 15)) for _ in range(300)]
    read = spans_per_sentence(sentences, scheme)
    expected = Entities(sentences, reference).entities
    assert [[(e.tag, e.start, e.end) for e in sentence] for sentence in expected] == read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about nothing here but is chatty on edge cases
        default = [[(t, start, end + 1) for t, start, end in get_entities(tags)] for tags in sentences]
    assert spans_per_sentence(sentences, scheme, "conlleval") == default


def test_conlleval_reading_starts_entities_where_strict_reading_drops_them():
    tags = "O I-PER I-PER B-LOC I-ORG O B-PER".split()
    assert spans(tags, "BIO") == [Span("LOC", 3, 4), Span("PER", 6, 7)]
    assert spans(tags, "BIO", "conlleval") == [
        Span("PER", 1, 3),  # I- after O starts an entity
        Span("LOC", 3, 4),
        Span("ORG", 4, 5),  # a type change ends one and starts another
        Span("PER", 6, 7),
    ]
    # conlleval.pl has no rule for S and none for E followed by B: seqeval's (E and S end an entity) apply
    assert spans("B-X E-X B-X E-X S-X S-X".split(), "BIOES", "conlleval") == [
        Span("X", 0, 2),
        Span("X", 2, 4),
        Span("X", 4, 5),
        Span("X", 5, 6),
    ]
    assert spans("B-X M-X E-X M-X".split(), "BMES", "conlleval") == [Span("X", 0, 3), Span("X", 3, 4)]


@pytest.mark.parametrize(
    ("tags", "scheme", "position", "reason"),
    [
        ("O O I-PER I-PER", "BIO", 2, "I-PER without B-PER"),
        ("B-LOC I-PER", "BIO", 1, "I-PER after B-LOC"),
        ("B-PER E-PER", "BIO", 1, "E-PER is not a BIO tag (O, or B-, I- and a type)"),
        ("O E-LOC O", "BIOES", 1, "E-LOC alone"),
        ("S-LOC E-LOC", "BIOES", 1, "E-LOC after S-LOC"),
        ("B-LOC O", "BIOES", 0, "B-LOC alone (a one-token entity is S-LOC)"),
        ("B-LOC I-LOC O S-PER", "BIOES", 1, "entity ends on I-LOC instead of E-LOC"),
        ("B-LOC I-LOC", "BIOES", 1, "entity ends on I-LOC instead of E-LOC"),
        ("B-LOC M-LOC E-LOC O M-PER", "BMES", 4, "M-PER without B-PER"),
        ("B-LOC I-LOC E-LOC", "BMES", 1, "I-LOC is not a BMES tag (O, or B-, M-, E-, S- and a type)"),
        ("B-LOC O", "BIOS", 0, "B-LOC alone (a one-token entity is S-LOC)"),
        (
            "I-LOC B-LOC O B-PER",
            "IOB1",
            3,
            "B-PER not right after a PER entity (IOB1 writes B- only between two of one type)",
        ),
        ("B I O I", "BIO", 3, "I without B"),
        ("B-PER I-PER", "IO", 0, "B-PER is not a IO tag (O, or I- and a type)"),
    ],
)
def test_validation_names_the_first_invalid_tag(tags, scheme, position, reason):
    tags = tags.split()
    error = validate(tags, scheme)
    assert error == TagError(position, tags[position], reason)
    assert str(error) == f"{reason} at token {position}"


@pytest.mark.parametrize("seed", range(3))
def test_invalid_tags_of_many_sentences_are_those_of_each_sentence(seed):
    rng = random.Random(seed)
    sentences = [random_tags(rng, "BIMES", rng.randint(0, 8)) for _ in range(400)]
    expected = [(i, validate(tags, "BIOES")) for i, tags in enumerate(sentences)]
    assert invalid_tags(sentences, "BIOES") == [(i, error) for i, error in expected if error is not None]
    assert len(invalid_tags(sentences, "BIOES")) > 100  # the test sees invalid sentences


@pytest.mark.parametrize(("scheme", "prefixes"), [("BIO", "BI"), ("IOB1", "BI"), ("BIOES", "BIES"), ("BMES", "BMES")])
@pytest.mark.parametrize("seed", range(3))
def test_repair_keeps_the_conlleval_reading_and_is_valid(scheme, prefixes, seed):
    rng = random.Random(seed)
    for _ in range(200):
        tags = random_tags(rng, prefixes, rng.randint(0, 12), types=("A", "B"))
        repaired = repair(tags, scheme)
        assert validate(repaired, scheme) is None
        assert spans(repaired, scheme) == spans(tags, scheme, "conlleval")
        if validate(tags, scheme) is None:
            assert repaired == tags


def test_repair_of_the_usual_mistakes():
    assert repair("O I-PER I-PER O B-LOC I-ORG".split(), "BIO") == "O B-PER I-PER O B-LOC B-ORG".split()
    assert repair("B-LOC I-LOC O E-PER".split(), "BIOES") == "B-LOC E-LOC O S-PER".split()


def test_tags_without_types():
    tags = "B I O I B".split()
    assert spans(tags, "BIO") == [Span("", 0, 2), Span("", 4, 5)]
    assert spans(tags, "BIO", "conlleval") == [Span("", 0, 2), Span("", 3, 4), Span("", 4, 5)]
    assert tags_from_spans(spans(tags, "BIO"), 5, "BIOES") == "B E O O S".split()
    assert detect_scheme([tags]) == "BIO"


@pytest.mark.parametrize(
    ("sentences", "scheme"),
    [
        (["B-PER I-PER O B-LOC", "B-ORG B-ORG"], "BIO"),
        (["I-PER I-PER O I-LOC", "I-ORG B-ORG"], "IOB1"),  # CoNLL-2003 as published
        (["B-PER I-PER O I-LOC"], "BIO"),  # as invalid in BIO as in IOB1: BIO
        (["I-PER I-PER O I-LOC B-ORG"], "IOB1"),  # fewer IOB1 errors
        (["I-PER O I-LOC"], "IO"),
        (["B-PER O B-LOC"], "BIO"),
        (["B-PER E-PER O S-LOC"], "BIOES"),
        (["S-PER O S-LOC"], "BIOES"),
        (["B-PER I-PER O S-LOC"], "BIOS"),
        (["B-PER M-PER E-PER O S-LOC"], "BMES"),
        ([""], "IO"),
    ],
)
def test_detect_scheme(sentences, scheme):
    assert detect_scheme([s.split() for s in sentences]) == scheme


def test_detect_scheme_rejects_mixed_or_unknown_prefixes():
    with pytest.raises(BertforgeError, match="both M- and I-"):
        detect_scheme([["B-X", "M-X", "I-X"]])
    with pytest.raises(BertforgeError, match="tag 'U-X' is not O or one of B-, I-, M-, E-, S-"):
        detect_scheme([["B-X", "U-X"]])


def test_reading_a_tag_outside_the_scheme_is_an_error():
    with pytest.raises(BertforgeError, match="tag E-PER is not a BIO tag"):
        spans(["B-PER", "E-PER"], "BIO", "conlleval")
    with pytest.raises(BertforgeError, match="unknown span mode 'lenient'"):
        spans(["O"], "BIO", "lenient")
