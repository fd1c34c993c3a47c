"""Documents tokenized once into a flat id array, with the word boundaries whole-word masking needs.

Word boundaries: a WordPiece `##` piece continues the word before it; in text holding CJK ideographs,
where WordPiece makes every character its own token, a segmenter (jieba) groups characters into words and
a character inside a word continues it. The ids are untouched: the grouping is used during masking only.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from dataclasses import dataclass

import numpy as np

from bertforge.extras import need
from bertforge.tokenization import FullTokenizer

_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")


@dataclass
class TokenizedDocuments:
    """Sentences of many documents. Document d holds sentences doc_bounds[d]:doc_bounds[d+1]."""

    ids: np.ndarray  # flat token ids
    sentence_bounds: np.ndarray  # (num_sentences + 1,) offsets into ids
    doc_bounds: np.ndarray  # (num_docs + 1,) offsets into sentences
    source: np.ndarray  # (num_docs,) each document's index in the input list (empty ones are dropped)
    word_starts: np.ndarray | None = None  # flat bool, for whole-word masking

    @property
    def num_documents(self) -> int:
        return len(self.doc_bounds) - 1


def continuation_ids(tokenizer: FullTokenizer) -> np.ndarray:
    """Bool per vocab id: True for `##` pieces."""
    return np.array([t.startswith("##") for t in tokenizer.ids_to_tokens], dtype=bool)


def tokenize_documents(
    documents: list[list[str]], tokenizer: FullTokenizer, dtype: np.dtype, whole_words: bool = False
) -> TokenizedDocuments:
    """Tokenize every sentence; sentences that tokenize to nothing and then empty documents are dropped."""
    lines = list(itertools.chain.from_iterable(documents))
    if whole_words:
        encoded = tokenizer.ids_and_offsets_batch(lines)
        ids = [e[0] for e in encoded]
    else:
        ids = tokenizer.ids_batch(lines)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    doc_of_line = np.repeat(np.arange(len(documents)), [len(d) for d in documents])
    kept = lengths > 0
    sentence_bounds = np.concatenate([[0], np.cumsum(lengths[kept])])
    per_doc = np.bincount(doc_of_line[kept], minlength=len(documents))
    doc_bounds = np.concatenate([[0], np.cumsum(per_doc[per_doc > 0])])
    source = np.nonzero(per_doc > 0)[0]
    word_starts = None
    if whole_words:
        word_starts = ~continuation_ids(tokenizer)[flat]
        chinese = [i for i, line in enumerate(lines) if lengths[i] and _CJK.search(line)]
        if chinese:
            line_start = np.concatenate([[0], np.cumsum(lengths)])
            for i in chinese:
                word_starts[line_start[i] : line_start[i + 1]] = _segmenter_word_starts(lines[i], encoded[i][1])
    return TokenizedDocuments(flat, sentence_bounds, doc_bounds, source, word_starts)


def _segmenter_word_starts(line: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """True for tokens whose first character starts a jieba word (or a WordPiece word inside it)."""
    starts = {0}
    position = 0
    for word in _jieba().cut(line):
        position += len(word)
        starts.add(position)
    return np.fromiter((begin in starts for begin, _ in offsets), dtype=bool, count=len(offsets))


@functools.cache
def _jieba():
    """jieba, imported and initialised on first use (its dictionary takes about a second to load)."""
    jieba = need("jieba", "data")
    jieba.setLogLevel(logging.WARNING)
    return jieba
