"""Rule-based sentence splitting for Chinese, English and mixed text (one sentence per line for pretraining).

BERT's pretraining data builder reads documents as one sentence per line, and next-sentence prediction is
only as good as those lines. A trained splitter would be a heavy dependency for a preprocessing step that
must run over gigabytes, so this is a single regex pass plus a few cheap checks at English full stops.

Chinese: a sentence ends after a run of 。！？；(or an ellipsis …… followed by more Chinese text); closing
quotes and brackets right after the run stay with the sentence they close (`他说：“好。”` | `然后走了。`).
English: a sentence ends after . ! ? (plus closing quotes/brackets) followed by whitespace and a capital,
digit, opening quote/bracket or a CJK character — except after known abbreviations (Mr. Dr. St. vs.),
dotted abbreviations (U.S. e.g. i.e. Ph.D.), single-letter initials (J. R. R. Tolkien) and "..." ellipses.
Decimals (3.14) never qualify because no whitespace follows the dot. Newlines are always boundaries.
"""

from __future__ import annotations

import re

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_STOPS = "。！？；"
_CLOSERS = "”’」』）》〉】〕\"')\\]"
_OPENERS = "\"'“‘(（[「『《【"

# A run of terminators, the closing quotes/brackets glued to it (with any stops after them: `“好。”。`),
# then any whitespace.
_BOUNDARY = re.compile(rf"([{_CJK_STOPS}!?.…]+)([{_CLOSERS}][{_CLOSERS}{_CJK_STOPS}!?.…]*)?(\s*)")
_IS_CJK = re.compile(rf"[{_CJK}]")
# The letters (and inner dots) right before a full stop; none when a digit is glued on ("1920s.").
_WORD_END = re.compile(r"(?<![\d_])[A-Za-z\u00c0-\u024f.]*\Z")
# Abbreviations written with inner dots: U.S, e.g, i.e, Ph.D, a.m (the final dot is the candidate).
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")

# Titles and short forms that are followed by a name or a word, practically never by a new sentence.
# "etc." is deliberately absent: followed by a capital it nearly always ends the sentence.
_ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Messrs Mme Mlle Dr Prof Rev Fr Msgr Hon Gov Sen Rep Pres Rt St Ste Mt Ft "
    "Gen Brig Col Lt Maj Capt Cmdr Cdr Comdr Adm Sgt Cpl Pvt Supt Insp vs cf al approx ca viz resp".split()
)
# Abbreviations that only precede numbers ("No. 5", "Jan. 1"); before a capital the sentence did end.
_NUMBER_ABBREVIATIONS = frozenset(
    "No Nos no nos Vol Vols vol vols Fig Figs fig figs p pp Art Ch ch Sec sec Ed ed Op op "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split()
)


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences, stripped and never empty; every line break is a boundary too."""
    sentences: list[str] = []
    for line in text.splitlines():
        if line.strip():
            sentences.extend(_split_line(line))
    return sentences


def _split_line(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(line):
        end = m.end()
        if end >= len(line):
            break  # the rest of the line is the last sentence anyway
        if _ends_sentence(line, m):
            sentence = line[start:end].strip()
            if sentence:
                out.append(sentence)
            start = end
    rest = line[start:].strip()
    if rest:
        out.append(rest)
    return out


def _ends_sentence(line: str, m: re.Match[str]) -> bool:
    """Whether the terminator run in `m` ends a sentence, judged by what follows (and precedes, for '.')."""
    run, _, space = m.groups()
    nxt = line[m.end()]
    if any(c in _CJK_STOPS for c in run):
        return True
    cjk_next = _IS_CJK.match(nxt) is not None
    if "…" in run or "..." in run:
        # Chinese ellipsis ends a sentence when Chinese follows; English "wait... Then" does not.
        # (".." is a typo, "Jr..", and counts as a full stop.)
        return cjk_next
    if not (cjk_next or (space and (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS))):
        return False
    if "!" in run or "?" in run:
        return True
    return not _is_abbreviation(_word_before(line, m.start()), nxt)


def _word_before(line: str, dot: int) -> str:
    """The Latin word (dots included: "U.S") that ends at the dot; Chinese or punctuation ends it too."""
    m = _WORD_END.search(line, max(0, dot - 32), dot)
    return m.group().lstrip(".") if m else ""


def _is_abbreviation(word: str, nxt: str) -> bool:
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. R. R. Tolkien", "George W. Bush"
    if word in _ABBREVIATIONS or _DOTTED.fullmatch(word):
        return True
    return word in _NUMBER_ABBREVIATIONS and nxt.isdigit()
