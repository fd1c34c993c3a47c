"""Google BERT's WordPiece tokenizer, token for token, running on the Rust `tokenizers` library.

Google's `tokenization.FullTokenizer` decides every character class with the *running Python's*
`unicodedata`; Rust's built-in `BertNormalizer`/`BertPreTokenizer`/`StripAccents` use their own (older or
newer) Unicode tables and slightly different rules (they drop private-use and unassigned characters, strip
Mc/Me marks as well as Mn, ignore the final-sigma rule of `str.lower()`, have a typo in one CJK range).
So the pipeline below is composed from generic pieces whose character classes are computed from Python's
`unicodedata` at start-up (once, then cached). Each text takes one of three pipelines: ASCII-only
texts skip NFD and accent stripping; texts with a capital sigma, or with one of the few characters where
Rust's `Lowercase`/`NFD` tables disagree with Python's (found by probing), take a patched, slower one.
Tests compare all of this against Google's own file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import tokenizers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text, cache_dir

UNK, CLS, SEP = "[UNK]", "[CLS]", "[SEP]"
MAX_INPUT_CHARS_PER_WORD = 200  # longer words become [UNK], as in Google's WordpieceTokenizer

# Google's `_is_chinese_char` ranges (Rust's BertNormalizer has 0x2B920 instead of 0x2B820).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_SURROGATES = range(0xD800, 0xE000)
_CAPITAL_SIGMA = "\u03a3"


# ---------------------------------------------------------------------------------------------- vocab


def read_vocab(vocab_file: str | os.PathLike) -> list[str]:
    """The vocab's tokens in id order, read like Google's `load_vocab`.

    Lines end at \\n, \\r\\n or \\r only (universal newlines; U+2028 inside a line is *not* a break) and
    each is `.strip()`ped, so the Chinese vocab's line "\\u2028" is the token "" and keeps its id.
    A UTF-8 byte-order mark is dropped from the first token.
    """
    path = os.fspath(vocab_file)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise BertforgeError(f"{path}: cannot read vocab file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BertforgeError(f"{path} line {line}: vocab file is not valid UTF-8") from exc
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":  # the text after the last newline is not a line (readline() hits EOF)
        lines.pop()
    if not lines:
        raise BertforgeError(f"{path}: vocab file is empty, expected one token per line")
    return [line.strip() for line in lines]


def load_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """token -> id (line index); for a duplicated token the later line wins, as in Google's dict."""
    return {token: i for i, token in enumerate(read_vocab(vocab_file))}


def vocab_is_cased(vocab_file: str | os.PathLike) -> bool:
    """Whether a vocab was built without lower-casing, for checkpoints that do not say (Google's TF releases
    leave it to the folder name: `cased_L-12_…` vs `uncased_L-12_…`). A cased vocab has thousands of tokens
    with capitals; an uncased one none, and Google's Chinese vocab two (`<S>`, `<T>`)."""
    tokens = [t for t in read_vocab(vocab_file) if not (t.startswith("[") and t.endswith("]"))]
    return sum(t != t.lower() for t in tokens) > 0.01 * len(tokens)


# ------------------------------------------------------------------------- character classes (Python)


@dataclass(frozen=True)
class _CharClasses:
    """Regex character-class bodies (no brackets) that mirror Google's predicates under this Python."""

    control: str  # removed by `_clean_text`: Cc/Cf except \t\n\r, plus U+0000 and U+FFFD
    ascii_control: str  # the part of `control` below 128
    separator: str  # splits words: whitespace, punctuation, CJK ideographs
    isolated: str  # each char is its own word: punctuation and CJK ideographs
    nonspacing_mark: str  # Mn, dropped after NFD when lower-casing


def _onig_escape(cp: int) -> str:
    return f"\\x{{{cp:x}}}"


def _python_escape(cp: int) -> str:
    return re.escape(chr(cp))


def _class_body(codepoints: Iterable[int], escape: Callable[[int], str] = _onig_escape) -> str:
    """Compress sorted code points into a class body of ranges, e.g. `\\x{41}-\\x{5a}\\x{5f}` (Oniguruma).
    Ranges also keep Python's `re` fast: a class of scattered astral literals scans ~10x slower."""
    parts, start, prev = [], None, None
    for cp in list(codepoints) + [None]:
        if cp is not None and prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(escape(start) + (f"-{escape(prev)}" if prev != start else ""))
        start = prev = cp
    return "".join(parts)


def _all_chars() -> tuple[np.ndarray, str]:
    """Every code point except surrogates (which no `str` from a file can hold), as array and string."""
    cps = np.arange(0x110000, dtype=np.uint32)
    cps = cps[(cps < _SURROGATES.start) | (cps >= _SURROGATES.stop)]
    return cps, cps.tobytes().decode("utf-32-le")


def _compute_char_classes() -> _CharClasses:
    cps, chars = _all_chars()
    # Two-letter category codes joined: a match of an Uppercase-first pattern can only start at an even
    # offset, i.e. on a code point boundary (much faster than a Python loop over 1.1M characters).
    cats = "".join(map(unicodedata.category, chars))

    def category(pattern: str) -> set[int]:
        return set(cps[[m.start() // 2 for m in re.finditer(pattern, cats)]].tolist())

    control = (category("C[cf]") - {9, 10, 13}) | {0xFFFD}
    # Google's whitespace (' ', \t, \n, \r, Zs) plus what `str.split()` also splits on (U+2028/9).
    space = {ord(m.group()) for m in re.finditer(r"\s", chars)} - control | category("Zs") | {9, 10, 13, 32}
    ascii_punct = {*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)}
    punct = category("P") | ascii_punct
    cjk = {cp for lo, hi in _CJK_RANGES for cp in range(lo, hi + 1)}
    return _CharClasses(
        control=_class_body(sorted(control)),
        ascii_control=_class_body(sorted(cp for cp in control if cp < 128)),
        separator=_class_body(sorted(space | punct | cjk)),
        isolated=_class_body(sorted(punct | cjk)),
        nonspacing_mark=_class_body(sorted(category("Mn"))),
    )


@functools.lru_cache(maxsize=None)
def _final_sigma_regex() -> str:
    """Where Python's `str.lower()` turns Σ into final ς: after a cased letter and not before one,
    skipping case-ignorable characters both ways. Python does not expose Cased/Case_Ignorable, so both
    are probed through `lower()` itself: for every x, is Σ final in 'ΑxΣ', 'xΣ' and 'ΑΣx'?"""
    cps, xs = _all_chars()
    cps, xs = cps[cps != 0x20], xs.replace(" ", "")  # the space separates the probes
    final = ord("\u03c2")

    def sigma_is_final(probe: str, before_space: bool) -> np.ndarray:
        a = np.frombuffer(probe.lower().encode("utf-32-le"), dtype=np.uint32)
        spaces = np.flatnonzero(a == 0x20)
        at = np.append(spaces - 1, len(a) - 1) if before_space else np.insert(spaces + 1, 0, 0) + 1
        return a[at] == final

    after_a = sigma_is_final("\u0391" + "\u03a3 \u0391".join(xs) + "\u03a3", True)  # ignorable or cased
    alone = sigma_is_final("\u03a3 ".join(xs) + "\u03a3", True)  # cased and not ignorable
    before = sigma_is_final("\u0391\u03a3" + " \u0391\u03a3".join(xs), False)  # ignorable or not cased
    ignorable = _class_body(cps[after_a & before & ~alone].tolist())
    cased = _class_body(cps[alone].tolist())
    # Oniguruma has no variable-length lookbehind; \K ("keep") starts the match, and so the replacement, at Σ.
    return f"[{cased}][{ignorable}]*\\K{_CAPITAL_SIGMA}(?![{ignorable}]*[{cased}])"


# ---------------------------------------------------------------- where Rust's tables differ from Python


@dataclass(frozen=True)
class _Deviations:
    lower: dict[str, str]  # char -> Python's c.lower(), where Rust's Lowercase gives something else
    nfd: dict[str, str]  # char -> Python's NFD(c), where Rust's NFD gives something else
    route: frozenset[str]  # texts with any of these chars take the patched pipeline


def _probe(rust, python, chars: str, chunk: int = 4096) -> dict[str, str]:
    """char -> python(char) wherever `rust(char)` differs; compared blockwise, refined where they differ."""
    out = {}
    for i in range(0, len(chars), chunk):
        block = chars[i : i + chunk]
        if rust(block) != python(block):
            out.update({c: python(c) for c in block if rust(c) != python(c)})
    return out


def _compute_deviations() -> _Deviations:
    chars = _all_chars()[1].replace(_CAPITAL_SIGMA, "")  # Σ depends on context; handled separately
    lower = _probe(normalizers.Lowercase().normalize_str, str.lower, chars)
    nfd = _probe(normalizers.NFD().normalize_str, functools.partial(unicodedata.normalize, "NFD"), chars)
    route = set(lower) | set(nfd) | {_CAPITAL_SIGMA}
    if nfd:  # a char whose lower-casing yields an NFD-deviating char needs the patch as well
        route |= set(_probe(lambda s: "".join(c for c in s.lower() if c not in nfd), str.lower, chars))
    return _Deviations(lower, nfd, frozenset(route))


# ------------------------------------------------------------------- the derived tables, cached on disk

# Bump when the derivations above change: cached tables of another version are recomputed.
_TABLES_VERSION = 1


@functools.lru_cache(maxsize=None)
def _tables() -> tuple[_CharClasses, _Deviations]:
    """The character classes and deviations, which depend only on this Python's Unicode tables and the
    `tokenizers` version: computed once (a scan of every code point) and kept in the cache folder, so that every later
    process (each data-creation worker, each test) starts without it."""
    key = f"v{_TABLES_VERSION}-unicode{unicodedata.unidata_version}-tokenizers{tokenizers.__version__}"
    path = cache_dir() / "tokenizer-tables" / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _CharClasses(**data["classes"]), _Deviations(data["lower"], data["nfd"], frozenset(data["route"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    classes, dev = _compute_char_classes(), _compute_deviations()
    data = {"classes": asdict(classes), "lower": dev.lower, "nfd": dev.nfd, "route": sorted(dev.route)}
    try:
        atomic_write_text(path, json.dumps(data, ensure_ascii=True))
    except OSError:  # a read-only cache folder only costs the recomputation
        pass
    return classes, dev


def _char_classes() -> _CharClasses:
    return _tables()[0]


def _deviations() -> _Deviations:
    return _tables()[1]


_PLACEHOLDER_DIGITS = "\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"


def _swap_through(step: normalizers.Normalizer, fixes: dict[str, str]) -> list[normalizers.Normalizer]:
    """`step`, except that each key of `fixes` comes out as its value: before the step the key is hidden
    behind a placeholder "\\x01" + fixed-width digits, all C0 controls (which `_clean_text` already removed
    from the text, and which Lowercase/NFD leave alone); after it the placeholder becomes the value."""
    base, width = len(_PLACEHOLDER_DIGITS), 1
    while base**width < len(fixes):
        width += 1
    hide, show = [], []
    for n, (char, value) in enumerate(sorted(fixes.items())):
        placeholder = "\x01" + "".join(_PLACEHOLDER_DIGITS[n // base**k % base] for k in range(width))
        hide.append(normalizers.Replace(char, placeholder))
        show.append(normalizers.Replace(placeholder, value))
    return hide + [step] + show


# ------------------------------------------------------------------------------------------ pipeline

ASCII, GENERAL, PATCHED = 0, 1, 2  # the three pipelines; each text goes through exactly one


def _build(vocab: dict[str, int], do_lower_case: bool, pipeline: int) -> Tokenizer:
    """A Rust tokenizer equal to Google's BasicTokenizer + WordpieceTokenizer (no special tokens), for
    ASCII-only texts (NFD and accent stripping are no-ops there, so they are skipped), for general texts, or
    PATCHED for texts holding a Σ or a character whose Rust Lowercase/NFD deviates from Python."""
    classes = _char_classes()
    control = classes.ascii_control if pipeline == ASCII else classes.control
    steps = [normalizers.Replace(Regex(f"[{control}]+"), "")]
    if do_lower_case:
        lower, nfd = normalizers.Lowercase(), normalizers.NFD()
        if pipeline == PATCHED:
            dev = _deviations()
            steps.append(normalizers.Replace(Regex(_final_sigma_regex()), "\u03c2"))
            steps += _swap_through(lower, dev.lower) + _swap_through(nfd, dev.nfd)
        else:
            steps += [lower] if pipeline == ASCII else [lower, nfd]
        if pipeline != ASCII:
            steps.append(normalizers.Replace(Regex(f"[{classes.nonspacing_mark}]+"), ""))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    tokenizer.normalizer = normalizers.Sequence(steps)
    # Words are runs of non-separators; each punctuation mark / CJK ideograph is a word; whitespace is dropped.
    word = Regex(f"[^{classes.separator}]+|[{classes.isolated}]")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(word, behavior="removed", invert=True)
    return tokenizer


@dataclass(slots=True)
class Encoding:
    """One example, `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, unpadded."""

    tokens: list[str]
    input_ids: list[int]
    token_type_ids: list[int]  # 0 up to and including the first [SEP], then 1
    offsets: list[tuple[int, int]]  # character span in the original text of its segment; (0, 0) for specials
    segments: list[int]  # which text a token came from: 0 = a, 1 = b, -1 = special token
    truncated: bool


@dataclass
class BatchEncoding:
    encodings: list[Encoding]
    num_truncated: int


def truncated_lengths(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Lengths left by Google's `_truncate_seq_pair`: pop from the longer segment until the pair fits,
    from b on a tie. Closed form: the longer side shrinks first, then both meet at ceil/floor of half."""
    if len_a + len_b <= max_tokens:
        return len_a, len_b
    new_a = min(len_a, max(max_tokens - len_b, (max_tokens + 1) // 2))
    return new_a, max_tokens - new_a


class FullTokenizer:
    """Google's `FullTokenizer(vocab_file, do_lower_case)`: same tokens, same ids, much faster."""

    def __init__(self, vocab_file: str | os.PathLike, do_lower_case: bool = True):
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = do_lower_case
        self.ids_to_tokens = read_vocab(vocab_file)
        self.vocab = {token: i for i, token in enumerate(self.ids_to_tokens)}
        if UNK not in self.vocab:
            raise BertforgeError(f"{self.vocab_file}: vocab has no {UNK} token (needed for unknown words)")
        # PATCHED is built on first use (Greek capitals are the usual reason); it only exists to lower-case.
        self._pipelines: dict[int, Tokenizer] = {k: _build(self.vocab, do_lower_case, k) for k in (ASCII, GENERAL)}
        self._needs_patch: re.Pattern | None = None
        if do_lower_case:
            route = sorted(map(ord, _deviations().route))
            self._needs_patch = re.compile(f"[{_class_body(route, _python_escape)}]")

    def __len__(self) -> int:
        """Number of ids (vocab lines), i.e. the embedding rows a matching model has."""
        return len(self.ids_to_tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokenize many texts at once (in parallel threads); same result as `tokenize` on each."""
        itos = self.ids_to_tokens  # the fast path skips token strings and offsets; ids are enough
        return [[itos[i] for i in e.ids] for e in self._encode(texts, with_offsets=False)]

    def ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens): `convert_tokens_to_ids(tokenize(t))`, without strings."""
        return [e.ids for e in self._encode(texts, with_offsets=False)]

    def ids_and_offsets_batch(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids of each text with each token's character span in that text."""
        return [(e.ids, e.offsets) for e in self._encode(texts, with_offsets=True)]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        try:
            return [self.vocab[t] for t in tokens]
        except KeyError as exc:
            raise BertforgeError(f"token {exc.args[0]!r} is not in {self.vocab_file}") from None

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        try:
            return [self.ids_to_tokens[int(i)] for i in ids]
        except IndexError:
            raise BertforgeError(f"id out of range for {self.vocab_file} ({len(self)} ids)") from None

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        max_length: int | None = 512,
        keep_end: bool = False,
    ) -> BatchEncoding:
        """`[CLS] a [SEP] (b [SEP])` per example, cut to `max_length` tokens like Google's run_classifier:
        a alone keeps its first max_length-2 tokens; a pair is cut by `_truncate_seq_pair` to max_length-3.
        `keep_end`: each text keeps its last tokens instead (TEI's truncation_direction "Left")."""
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise BertforgeError(f"encode_batch: {len(texts)} texts but {len(text_pairs)} text pairs")
        missing = [t for t in (CLS, SEP) if t not in self.vocab]
        if missing:
            raise BertforgeError(f"{self.vocab_file}: vocab has no {' '.join(missing)} token")
        n_special = 2 if text_pairs is None else 3
        if max_length is not None and max_length < n_special:
            raise BertforgeError(f"max_length={max_length} leaves no room for text ({n_special} special tokens)")
        encoded = self._encode(list(texts) + list(text_pairs or ()), with_offsets=True)
        cls, sep = self.vocab[CLS], self.vocab[SEP]
        out, num_truncated = [], 0
        for i in range(len(texts)):
            a = encoded[i]
            b = encoded[len(texts) + i] if text_pairs is not None else None
            len_a, len_b = len(a.ids), len(b.ids) if b is not None else 0
            if max_length is None:
                keep_a, keep_b = len_a, len_b
            elif b is None:
                keep_a, keep_b = min(len_a, max_length - 2), 0
            else:
                keep_a, keep_b = truncated_lengths(len_a, len_b, max_length - 3)
            cut_a = slice(len_a - keep_a, None) if keep_end else slice(keep_a)
            tokens = [CLS, *a.tokens[cut_a], SEP]
            ids = [cls, *a.ids[cut_a], sep]
            offsets = [(0, 0), *a.offsets[cut_a], (0, 0)]
            segments = [-1] + [0] * keep_a + [-1]
            if b is not None:
                cut_b = slice(len_b - keep_b, None) if keep_end else slice(keep_b)
                tokens += [*b.tokens[cut_b], SEP]
                ids += [*b.ids[cut_b], sep]
                offsets += [*b.offsets[cut_b], (0, 0)]
                segments += [1] * keep_b + [-1]
            truncated = (keep_a, keep_b) != (len_a, len_b)
            num_truncated += truncated
            type_ids = [0] * (keep_a + 2) + [1] * (len(ids) - keep_a - 2)
            out.append(Encoding(tokens, ids, type_ids, offsets, segments, truncated))
        return BatchEncoding(out, num_truncated)

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = 512) -> Encoding:
        pairs = None if text_pair is None else [text_pair]
        return self.encode_batch([text], pairs, max_length).encodings[0]

    def _encode(self, texts: Sequence[str], with_offsets: bool) -> list:
        """Rust encodings without special tokens, each text through the cheapest pipeline that is exact."""
        texts = list(texts)
        patch = self._needs_patch
        kinds = [ASCII if t.isascii() else PATCHED if patch and patch.search(t) else GENERAL for t in texts]
        groups: dict[int, list[int]] = {}
        for i, pipeline in enumerate(kinds):
            groups.setdefault(pipeline, []).append(i)
        result: list = [None] * len(texts)
        for pipeline, idx in groups.items():
            if pipeline not in self._pipelines:
                self._pipelines[pipeline] = _build(self.vocab, self.do_lower_case, pipeline)
            tok = self._pipelines[pipeline]
            batch = [texts[i] for i in idx] if len(groups) > 1 else texts
            encodings = (
                tok.encode_batch(batch, add_special_tokens=False)
                if with_offsets
                else tok.encode_batch_fast(batch, add_special_tokens=False)
            )
            if len(groups) == 1:
                return encodings
            for i, enc in zip(idx, encodings):
                result[i] = enc
        return result
