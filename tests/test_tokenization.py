"""bertforge.tokenization against Google BERT's own tokenization.py (real vocabs, real corpora)."""

import random
import re

import pytest

from bertforge import tokenization as tk
from bertforge.errors import BertforgeError
from tests.reference.google_bert import load_google_function, load_google_module

VOCABS = ("vocab-zh", "vocab-en")


@pytest.fixture(scope="module")
def google(sample):
    sample("google-bert")
    return load_google_module("tokenization")


@pytest.fixture(scope="module")
def pair(sample, google):
    """`pair(vocab, do_lower_case)` -> (ours, Google's), each built once per module."""
    cache = {}

    def get(vocab: str, do_lower_case: bool = True):
        key = (vocab, do_lower_case)
        if key not in cache:
            path = sample(vocab)
            cache[key] = (
                tk.FullTokenizer(path, do_lower_case),
                google.FullTokenizer(str(path), do_lower_case=do_lower_case),
            )
        return cache[key]

    return get


@pytest.fixture(scope="module")
def peoples_daily(sample):
    """People's Daily paragraphs without their POS tags (`sed -E 's@/[A-Za-z]+@@g; s/ +//g'`)."""
    with open(sample("peoples-daily"), encoding="utf-8") as f:
        lines = [re.sub(r" +", "", re.sub(r"/[A-Za-z]+", "", line)).strip() for line in f]
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def lee(sample):
    with open(sample("lee-background"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def assert_same_tokens(ours, theirs, texts):
    got = ours.tokenize_batch(texts)
    for text, tokens in zip(texts, got):
        assert tokens == theirs.tokenize(text), f"text {text!r}"


# ------------------------------------------------------------------------------------------ real text


@pytest.mark.parametrize(
    "vocab, do_lower_case, corpus, n",
    [
        ("vocab-zh", True, "peoples_daily", 2000),
        ("vocab-en", True, "lee", 300),
        ("vocab-zh", True, "lee", 60),
        ("vocab-en", True, "peoples_daily", 400),
        ("vocab-zh", False, "peoples_daily", 400),
        ("vocab-en", False, "lee", 60),
    ],
)
def test_real_corpora_match_google(pair, request, vocab, do_lower_case, corpus, n):
    ours, theirs = pair(vocab, do_lower_case)
    assert_same_tokens(ours, theirs, request.getfixturevalue(corpus)[:n])


# -------------------------------------------------------------------------------------- crafted cases

EDGE_CASES = [
    "",
    "   ",
    "\t\n\r",
    "Hello, World!",
    "unaffable",
    "[CLS] [SEP] [UNK] [MASK]",
    "café Ångström A\u030angstro\u0308m naïve résumé",
    "Tiếng Việt có dấu",
    "Straße İstanbul ǅ ﬁ",
    "ＡＢＣ１２３，ｈｅｌｌｏ！（全角）",
    "中华人民共和国成立了。",
    "𠀀𪛖 \U0002b81f\U0002b820\U0002b91f\U0002b920\U0002ceaf",  # Rust's CJK range starts at 2B920
    "한국어 텍스트",
    "ひらがな カタカナ ｶﾀｶﾅ",
    "emoji 👍🏽 👨\u200d👩\u200d👧 🇨🇳!",
    "ascii\x00only\x01 \x1b[0m\x7fdel\x0bvt\x0cff",
    "nul\x00here \x0bvt \x0cff \x1fus \x7fdel \x85nel",
    "rep\ufffdlace zw\u200bsp zw\u200dj soft\u00adhyphen \ufeffbom",
    "किताब हिन्दी क्षत्रिय",  # Mc vowel signs stay, the Mn virama goes
    "ΟΔΥΣΣΕΥΣ ΑΣ. ΑΣ-Β ΣΑ Σ ΑΣΑ ΑΣ\u00ad ΑΣ\u0345 Α\u0345Σ 中Σ ΑΣ中 aΣ ǅΣ",  # final sigma contexts
    "x" * 199 + " " + "y" * 200 + " " + "z" * 201 + " " + "é" * 201 + " " + "中" * 300,
    "private \ue000\uf8ff \U000f0000 \U0010fffd",
    "line\u2028sep para\u2029sep",
    "tab\there\nnew\r\nline",
    "a\u1fefb \u037e \u0387",
    "\u2000\u2001\u3000 ideographic space",
    "العَرَبِيَّة עִבְרִית ภาษาไทย",
    "\ua7cb\u1c89\U00010d50 \U00011938 \u0d04 \u0378",  # newer than this Python's Unicode, or unassigned
    "$100.00 & 50% off -- e.g. (a+b)^2 = c`d~e",
]


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_edge_cases_match_google(pair, vocab, do_lower_case):
    ours, theirs = pair(vocab, do_lower_case)
    assert_same_tokens(ours, theirs, EDGE_CASES)
    for text in EDGE_CASES[:12]:  # the single-text path too
        assert ours.tokenize(text) == theirs.tokenize(text)


def test_every_rust_deviation_is_patched(pair):
    """Characters where Rust's Lowercase/NFD tables disagree with this Python, in a few contexts."""
    ours, theirs = pair("vocab-zh", True)
    dev = tk._deviations()
    chars = sorted(set(dev.lower) | set(dev.nfd))
    texts = [f"{c} a{c}b \u0391{c}\u03a3 {c}\u0301" for c in chars]
    assert_same_tokens(ours, theirs, texts)


# ------------------------------------------------------------------------------------ randomized diff

_RANGES = [  # (weight, lo, hi)
    (30, 0x20, 0x7E),
    (6, 0x00, 0x1F),
    (4, 0x7F, 0xA0),
    (8, 0xA1, 0x24F),
    (5, 0x300, 0x36F),
    (5, 0x370, 0x3FF),
    (3, 0x3A3, 0x3A3),
    (4, 0x900, 0x97F),
    (6, 0x2000, 0x206F),
    (8, 0x4E00, 0x9FFF),
    (2, 0xF900, 0xFAFF),
    (4, 0x3000, 0x30FF),
    (4, 0xFF00, 0xFFEF),
    (3, 0xAC00, 0xD7A3),
    (3, 0xE000, 0xF8FF),
    (3, 0xFFF0, 0xFFFF),
    (4, 0x1F300, 0x1FAFF),
    (2, 0x2B800, 0x2B940),
    (10, 0x0, 0xFFFF),
    (4, 0x0, 0x10FFFF),
]


def random_text(rng: random.Random) -> str:
    weights = [w for w, _, _ in _RANGES]
    chars = []
    for _ in range(rng.randint(1, 24)):
        if rng.random() < 0.15:
            chars.append(" ")
            continue
        _, lo, hi = rng.choices(_RANGES, weights)[0]
        cp = rng.randint(lo, hi)
        chars.append(" " if 0xD800 <= cp <= 0xDFFF else chr(cp))
    return "".join(chars)


@pytest.mark.parametrize("vocab, do_lower_case", [("vocab-zh", True), ("vocab-zh", False), ("vocab-en", True)])
def test_random_unicode_matches_google(pair, vocab, do_lower_case):
    ours, theirs = pair(vocab, do_lower_case)
    rng = random.Random(20240601)
    assert_same_tokens(ours, theirs, [random_text(rng) for _ in range(3000)])


# ---------------------------------------------------------------------------------------------- vocab


def test_vocab_ids_equal_google(sample, google):
    for name in ("vocab-zh", "vocab-zh-crlf", "vocab-en"):
        assert tk.load_vocab(sample(name)) == dict(google.load_vocab(str(sample(name)))), name
    zh = tk.read_vocab(sample("vocab-zh"))
    assert len(zh) == 21128 and zh[343] == "" and zh[13502] == "##"  # the two U+2028 lines
    assert tk.read_vocab(sample("vocab-zh-crlf")) == zh


def test_vocab_bom_keeps_ids(sample, google, tmp_path):
    bommed = tmp_path / "vocab.txt"
    bommed.write_bytes(b"\xef\xbb\xbf" + sample("vocab-zh").read_bytes())
    assert tk.load_vocab(bommed) == dict(google.load_vocab(str(sample("vocab-zh"))))
    assert tk.FullTokenizer(bommed).tokenize("[PAD]中") == ["[", "pad", "]", "中"]


def test_vocab_duplicates_later_line_wins(tmp_path):
    """ids are line numbers (= embedding rows), as in google-research/bert's `load_vocab`. The copy in the
    bert-tensorflow 1.0.4 wheel keeps the first duplicate and renumbers the rest, so it is not used here;
    the real vocabs have no duplicates, where both agree (test_vocab_ids_equal_google)."""
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\na\nb\na\n\n", encoding="utf-8")
    tok = tk.FullTokenizer(path)
    assert tok.vocab == {"[UNK]": 0, "a": 3, "b": 2, "": 4} and len(tok) == 5
    assert tok.convert_tokens_to_ids(tok.tokenize("a b c")) == [3, 2, 0]
    assert tok.convert_ids_to_tokens([1, 3]) == ["a", "a"]


def test_vocab_errors_name_the_file(tmp_path):
    with pytest.raises(BertforgeError, match="missing.txt"):
        tk.FullTokenizer(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(BertforgeError, match="empty.txt.*empty"):
        tk.FullTokenizer(tmp_path / "empty.txt")
    (tmp_path / "nounk.txt").write_text("[PAD]\nhello\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"nounk.txt.*\[UNK\]"):
        tk.FullTokenizer(tmp_path / "nounk.txt")
    (tmp_path / "latin1.txt").write_bytes(b"[UNK]\ncaf\xe9\n")
    with pytest.raises(BertforgeError, match="latin1.txt line 2"):
        tk.FullTokenizer(tmp_path / "latin1.txt")


def test_conversions_match_google(pair):
    ours, theirs = pair("vocab-zh")
    tokens = theirs.tokenize("我们在 café 吃了 unaffable 东西")
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    ids = list(range(0, 21128, 97))
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert len(ours) == len(theirs.vocab) == 21128
    with pytest.raises(BertforgeError, match="not in"):
        ours.convert_tokens_to_ids(["no-such-token"])


# ------------------------------------------------------------------------------------------- encoding


def test_truncation_equals_google_truncate_seq_pair(google):
    truncate_seq_pair = load_google_function("run_classifier", "_truncate_seq_pair")
    rng = random.Random(7)
    for _ in range(3000):
        len_a, len_b, budget = rng.randint(0, 60), rng.randint(0, 60), rng.randint(0, 80)
        a, b = list(range(len_a)), list(range(len_b))
        truncate_seq_pair(a, b, budget)
        assert tk.truncated_lengths(len_a, len_b, budget) == (len(a), len(b)), (len_a, len_b, budget)


@pytest.mark.parametrize("max_length", [8, 32, 128])
def test_encode_pairs_like_google_run_classifier(pair, peoples_daily, lee, max_length):
    ours, theirs = pair("vocab-zh")
    truncate_seq_pair = load_google_function("run_classifier", "_truncate_seq_pair")
    texts = peoples_daily[:150] + [s[:300] for s in lee[:30]]
    a_texts, b_texts = texts[0::2], texts[1::2]
    batch = ours.encode_batch(a_texts, b_texts, max_length=max_length)
    truncated = 0
    for a, b, enc in zip(a_texts, b_texts, batch.encodings):
        tokens_a, tokens_b = theirs.tokenize(a), theirs.tokenize(b)
        total = len(tokens_a) + len(tokens_b)
        truncate_seq_pair(tokens_a, tokens_b, max_length - 3)
        truncated += len(tokens_a) + len(tokens_b) < total
        tokens = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
        assert enc.tokens == tokens
        assert enc.input_ids == theirs.convert_tokens_to_ids(tokens)
        assert enc.token_type_ids == [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        assert enc.segments == [-1] + [0] * len(tokens_a) + [-1] + [1] * len(tokens_b) + [-1]
        assert enc.truncated == (len(tokens_a) + len(tokens_b) < total)
    assert batch.num_truncated == truncated > 0


def test_encode_single_truncates_to_max_length(pair, peoples_daily):
    ours, theirs = pair("vocab-zh")
    batch = ours.encode_batch(peoples_daily[:50], max_length=20)
    for text, enc in zip(peoples_daily[:50], batch.encodings):
        tokens = theirs.tokenize(text)[:18]
        assert enc.tokens == ["[CLS]", *tokens, "[SEP]"] and enc.token_type_ids == [0] * len(enc.tokens)
    assert batch.num_truncated == sum(len(theirs.tokenize(t)) > 18 for t in peoples_daily[:50])
    assert ours.encode("短", max_length=None).tokens == ["[CLS]", "短", "[SEP]"]
    with pytest.raises(BertforgeError, match="max_length"):
        ours.encode("a", "b", max_length=2)


@pytest.mark.parametrize("vocab", VOCABS)
def test_offsets_point_into_original_text(pair, peoples_daily, vocab):
    ours, theirs = pair(vocab)
    texts = peoples_daily[:100] + [
        "Café Ångström, A\u030angstro\u0308m — naïve résumé; Tiếng Việt; ＡＢＣ１２３，",
        "\x00soft\u00adhyphen zero\u200bwidth  tabs\tand\nnewlines ﬁne İstanbul",
    ]
    pairs = texts[1:] + texts[:1]
    for enc, a, b in zip(ours.encode_batch(texts, pairs, max_length=None).encodings, texts, pairs):
        for token, (start, end), segment in zip(enc.tokens, enc.offsets, enc.segments):
            if segment == -1:
                assert (start, end) == (0, 0) and token in ("[CLS]", "[SEP]")
                continue
            if token == "[UNK]":
                continue
            piece = (a, b)[segment][start:end]
            assert "".join(theirs.basic_tokenizer.tokenize(piece)) == token.removeprefix("##"), (token, piece)


def test_offsets_survive_the_patched_pipeline(pair):
    """Final sigma and the placeholder swaps must not shift offsets."""
    ours, _ = pair("vocab-zh")
    text = "ΟΔΥΣΣΕΥΣ και ΑΣ. x\ua7cb café"
    enc = ours.encode(text, max_length=None)
    pieces = [text[start:end] for start, end in enc.offsets[1:-1]]
    assert enc.tokens[1:-1] == [
        "ο",
        "##δ",
        "##υ",
        "##σ",
        "##σ",
        "##ε",
        "##υ",
        "##ς",
        "κ",
        "##α",
        "##ι",
        "α",
        "##ς",
        ".",
        "[UNK]",
        "cafe",
    ]
    assert pieces == ["Ο", "Δ", "Υ", "Σ", "Σ", "Ε", "Υ", "Σ", "κ", "α", "ι", "Α", "Σ", ".", "x\ua7cb", "café"]


@pytest.mark.parametrize(
    "data,out,err",
    [
        (b"Hello world\ncaf\xe9 au lait\nGood line\r\n", "hello world\ngood line\n", "skipped 1 lines that are not"),
        ("Hello\nworld\n".encode("utf-16"), "", "error: stdin: none of its 3 lines is UTF-8 text (UTF-16?"),
    ],
)
def test_tokenize_command_skips_and_counts_lines_that_are_not_utf8(sample, monkeypatch, capsys, data, out, err):
    import io
    import sys

    from bertforge.cli import main as cli

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert cli(["tokenize", "--vocab", str(sample("vocab-en"))]) == (2 if not out else 0)
    captured = capsys.readouterr()
    assert captured.out == out and captured.err.count("\n") == 1 and err in captured.err, captured


@pytest.mark.parametrize("lower_case", [True, False])
def test_tokenize_command_prints_googles_tokens_and_ids(pair, sample, capsys, lower_case):
    from bertforge.cli import main as cli

    _, google = pair("vocab-en", lower_case)
    texts = ["Héllo Wörld, the UNAFFABLE café!", "jumped over 12,345 lazy dogs' tails"]
    flags = [] if lower_case else ["--no-lower-case"]
    assert cli(["tokenize", "--vocab", str(sample("vocab-en")), *flags, *texts]) == 0
    assert capsys.readouterr().out.splitlines() == [" ".join(google.tokenize(t)) for t in texts]
    assert cli(["tokenize", "--vocab", str(sample("vocab-en")), "--ids", *flags, *texts]) == 0
    printed = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [google.tokenize(t) for t in texts]
    assert printed == [{"tokens": t, "ids": google.convert_tokens_to_ids(t)} for t in expected]


def test_vocab_is_cased_on_real_vocabs_and_a_cased_one(sample, tmp_path):
    """Google's uncased English and Chinese vocabs (two tokens with capitals: `<S>`, `<T>`) are uncased; the
    English one with its whole words also capitalised (as a cased vocab holds both) is cased."""
    assert not tk.vocab_is_cased(sample("vocab-en")) and not tk.vocab_is_cased(sample("vocab-zh"))
    tokens = tk.read_vocab(sample("vocab-en"))
    extra = [t.capitalize() for t in tokens if t.isalpha() and t.islower()][:2000]
    (tmp_path / "cased.txt").write_text("\n".join(tokens + extra) + "\n", encoding="utf-8")
    assert tk.vocab_is_cased(tmp_path / "cased.txt")


@pytest.mark.parametrize("max_length", [8, 32])
def test_keep_end_cuts_each_text_from_its_start(pair, peoples_daily, lee, max_length):
    """TEI's truncation_direction "Left": the same lengths as Google's pair truncation, each text keeping its
    last word-pieces (Google's tokenizer and `_truncate_seq_pair` on the reversed pieces are the oracle)."""
    ours, theirs = pair("vocab-zh")
    truncate_seq_pair = load_google_function("run_classifier", "_truncate_seq_pair")
    texts = peoples_daily[:40] + [s[:300] for s in lee[:10]]
    a_texts, b_texts = texts[0::2], texts[1::2]
    pairs = ours.encode_batch(a_texts, b_texts, max_length=max_length, keep_end=True)
    singles = ours.encode_batch(a_texts, max_length=max_length, keep_end=True)
    for a, b, enc, single in zip(a_texts, b_texts, pairs.encodings, singles.encodings):
        tokens_a, tokens_b = theirs.tokenize(a)[::-1], theirs.tokenize(b)[::-1]
        truncate_seq_pair(tokens_a, tokens_b, max_length - 3)  # pops from the end: of the reversed, the start
        assert enc.tokens == ["[CLS]", *tokens_a[::-1], "[SEP]", *tokens_b[::-1], "[SEP]"]
        assert all(a[start:end] for start, end in enc.offsets[1 : 1 + len(tokens_a)])  # offsets still point in
        whole = theirs.tokenize(a)
        assert single.tokens == ["[CLS]", *whole[len(whole) - min(len(whole), max_length - 2) :], "[SEP]"]
    assert pairs.num_truncated > 0
