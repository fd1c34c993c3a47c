"""split_sentences on crafted Chinese/English/mixed cases and on real People's Daily paragraphs."""

import re

import pytest

from bertforge.data.sentences import split_sentences

CASES = [
    # Chinese: closing quotes/brackets stay with the sentence they close.
    ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
    ("真的吗？！太好了！我们走吧；他们留下。", ["真的吗？！", "太好了！", "我们走吧；", "他们留下。"]),
    ("他想了想……然后走了。", ["他想了想……", "然后走了。"]),
    ("“我……”他说不出话。", ["“我……”", "他说不出话。"]),
    ("（这是括号里的话。）下一句。《红楼梦》很好看。", ["（这是括号里的话。）", "下一句。", "《红楼梦》很好看。"]),
    ("她问：「你来吗？」我说：『来。』", ["她问：「你来吗？」", "我说：『来。』"]),
    ("“好。”。然后呢", ["“好。”。", "然后呢"]),
    ("价格是３．５元，涨了。", ["价格是３．５元，涨了。"]),
    # English: abbreviations, initials, decimals and ellipses do not end sentences.
    (
        "Mr. Smith met Dr. Jones at 3.14 p.m. on Jan. 5. It rained!",
        ["Mr. Smith met Dr. Jones at 3.14 p.m. on Jan. 5.", "It rained!"],
    ),
    (
        "J. R. R. Tolkien wrote books. He lived in the U.S. Army base? No. See No. 5 for more.",
        ["J. R. R. Tolkien wrote books.", "He lived in the U.S. Army base?", "No.", "See No. 5 for more."],
    ),
    (
        "He waited... Then he left. Next, e.g. this, i.e. that. Pi is 3.14159.",
        ["He waited... Then he left.", "Next, e.g. this, i.e. that.", "Pi is 3.14159."],
    ),
    (
        'He said "Go." Then he left. "Really?" she asked. (It was late.) So it goes.',
        ['He said "Go."', "Then he left.", '"Really?" she asked.', "(It was late.)", "So it goes."],
    ),
    (
        "Born in 1990. 2000 was good. Version 2.0 is out. St. Louis and Mt. Everest vs. Brig. Gen. Lee.",
        ["Born in 1990.", "2000 was good.", "Version 2.0 is out.", "St. Louis and Mt. Everest vs. Brig. Gen. Lee."],
    ),
    (
        "It has apples, pears, etc. The rest is sold by King, Jr.. On Monday it ended.",
        ["It has apples, pears, etc.", "The rest is sold by King, Jr..", "On Monday it ended."],
    ),
    (
        "Visit example.com. It is fine. approx. five people came.",
        ["Visit example.com.", "It is fine. approx. five people came."],
    ),
    # Mixed Chinese and English.
    (
        "我喜欢Python。It is great. 你呢？I think so!好的。",
        ["我喜欢Python。", "It is great.", "你呢？", "I think so!", "好的。"],
    ),
    ("Yahoo!是一家公司。等等...好吧。", ["Yahoo!", "是一家公司。", "等等...", "好吧。"]),
    # Line breaks always separate; blank input gives nothing.
    ("line one\n\n  line two. Line three  ", ["line one", "line two.", "Line three"]),
    ("", []),
    (" \n\t\n", []),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_crafted(text, expected):
    assert split_sentences(text) == expected


def _untag(line: str) -> str:
    """People's Daily is POS-tagged ("迈向/v  充满/v"): drop the tags and the spaces between words."""
    return re.sub(r"/[A-Za-z]+", "", line).replace(" ", "")


def test_peoples_daily_paragraphs(sample):
    lines = sample("peoples-daily").read_text(encoding="utf-8").splitlines()[:400]
    paragraphs = [p for p in (_untag(line) for line in lines) if p]
    total = 0
    for paragraph in paragraphs:
        sentences = split_sentences(paragraph)
        assert "".join(sentences) == paragraph  # nothing lost or reordered
        assert all(s and s == s.strip() for s in sentences)
        for s in sentences[:-1]:  # the last one ends however the paragraph does (headlines, captions)
            assert s[-1] in "。！？；…”’」』）》", (paragraph, s)
        total += len(sentences)
    assert total > 2 * len(paragraphs)


def test_a_long_text_splits_as_its_repeated_unit():
    """Many sentences per line over many lines (speed is a benchmark's concern, not a test's)."""
    unit = "他说：“好。”然后走了。Mr. Smith went to Washington, D.C. on Jan. 5. It rained! "
    text = (unit * 2000 + "\n") * 10
    assert split_sentences(text) == split_sentences(unit) * 20000
    assert split_sentences(unit) == [
        "他说：“好。”",
        "然后走了。",
        "Mr. Smith went to Washington, D.C. on Jan. 5.",
        "It rained!",
    ]
