"""Next-sentence-prediction instances from tokenized documents: Google's `create_instances_from_document`.

Documents are tokenized once and kept as one flat id array; an instance is only a few integers (where
segment A and segment B start in that array and how long they are), so `dupe_factor` passes reuse the
tokens and the control flow below touches sentences, never tokens. Google's token-by-token random
truncation ("pop the longer side, front or back with probability 1/2") is drawn in one go: the number of
tokens cut from each side is fixed by the lengths, and how many of them come off the front is
Binomial(cut, 1/2) — the same distribution.

Google draws a document's target length once per pass (short, uniform in [2, max], with probability
`short_seq_prob`; else the maximum). The pieces of a document cut for parallel work (see `corpus`) must draw
it together, or a one-document corpus gets a draw per piece where Google makes one for the whole book: the
same mean, but a pass that is short everywhere or nowhere becomes a mix, and any one run differs from
Google's far more than the cuts themselves could. So a piece draws from a stream named by its document
and the pass, the same in every chunk; a whole document draws from the chunk's stream, as Google does.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import numpy as np

from bertforge.data.documents import TokenizedDocuments
from bertforge.data.masking import ragged_arange
from bertforge.tokenization import truncated_lengths


@dataclass
class InstanceSpans:
    """Instances as spans of the flat id array: [CLS] A [SEP] B [SEP]."""

    a_start: np.ndarray
    a_len: np.ndarray
    b_start: np.ndarray
    b_len: np.ndarray
    is_random_next: np.ndarray  # NSP label: 1 = B is from a random document


def target_length(rng: random.Random, max_num_tokens: int, short_seq_prob: float) -> int:
    """Google's draw of a document's target length for one pass."""
    return rng.randint(2, max_num_tokens) if rng.random() < short_seq_prob else max_num_tokens


def create_instances(
    docs: TokenizedDocuments,
    max_seq_length: int,
    short_seq_prob: float,
    dupe_factor: int,
    rng: random.Random,
    piece_names: dict[int, str] | None = None,
) -> InstanceSpans:
    """All instances of `dupe_factor` passes over the documents (document order shuffled once, instance
    order shuffled at the end, as in Google's `create_training_instances`). `piece_names` names the
    documents that are pieces of a longer one (document -> a seed naming that one): they draw their target
    lengths from `Random(f"{name}:{pass}")`."""
    max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    bounds = docs.sentence_bounds.tolist()
    doc_bounds = docs.doc_bounds.tolist()
    order = list(range(docs.num_documents))
    rng.shuffle(order)
    documents = [range(doc_bounds[d], doc_bounds[d + 1]) for d in order]  # sentence ids per document
    names = [(piece_names or {}).get(d) for d in order]
    out: list[tuple[int, int, int, int, int]] = []
    for dupe in range(dupe_factor):
        for index, name in enumerate(names):
            shared = rng if name is None else random.Random(f"{name}:{dupe}")
            target = target_length(shared, max_num_tokens, short_seq_prob)
            _document_instances(documents, index, target, bounds, rng, out)
    rng.shuffle(out)
    arr = np.asarray(out, dtype=np.int64).reshape(-1, 5)
    spans = InstanceSpans(*(arr[:, i].copy() for i in range(5)))
    return _truncate(spans, max_num_tokens, np.random.default_rng(rng.getrandbits(64)))


def _document_instances(documents, index, target, bounds, rng, out) -> None:
    """Google's loop over one document's sentences towards `target` tokens, recording spans (before
    truncation).

    A document's sentences are consecutive, so a span of sentences is `bounds[first]:bounds[last + 1]` of
    the flat ids, and where a random segment B stops (Google adds sentences until it reaches its target)
    is a bisection of `bounds`: no walk over the other document, however long it is."""
    document = documents[index]
    chunk_first = document.start
    i = 0
    while i < len(document):
        sentence = document[i]
        if i == len(document) - 1 or bounds[sentence + 1] - bounds[chunk_first] >= target:
            size = sentence + 1 - chunk_first  # sentences in the current chunk
            a_end = rng.randint(1, size - 1) if size >= 2 else 1
            a_start, a_stop = bounds[chunk_first], bounds[chunk_first + a_end]
            if size == 1 or rng.random() < 0.5:
                random_next = 1
                target_b = target - (a_stop - a_start)
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != index:
                        break
                pool = documents[other]
                first = pool[rng.randint(0, len(pool) - 1)]
                # At least one sentence, then up to the first that reaches target_b, or the document's end.
                last = bisect.bisect_left(bounds, bounds[first] + target_b, first + 1, pool.stop)
                b_start, b_len = bounds[first], bounds[last] - bounds[first]
                i -= size - a_end  # put the unused sentences back
            else:
                random_next = 0
                b_start, b_len = a_stop, bounds[sentence + 1] - a_stop
            out.append((a_start, a_stop - a_start, b_start, b_len, random_next))
            chunk_first = document.start + i + 1  # the next chunk starts after what was used
        i += 1


def _truncate(spans: InstanceSpans, max_num_tokens: int, rng: np.random.Generator) -> InstanceSpans:
    """Cut each pair to max_num_tokens: lengths as Google's loop leaves them, front/back split at random."""
    kept = [truncated_lengths(a, b, max_num_tokens) for a, b in zip(spans.a_len.tolist(), spans.b_len.tolist())]
    keep_a, keep_b = (
        (np.asarray(x, dtype=np.int64).reshape(-1) for x in zip(*kept)) if kept else (spans.a_len, spans.b_len)
    )
    cut_a, cut_b = spans.a_len - keep_a, spans.b_len - keep_b
    spans.a_start = spans.a_start + rng.binomial(cut_a, 0.5)
    spans.b_start = spans.b_start + rng.binomial(cut_b, 0.5)
    spans.a_len, spans.b_len = keep_a, keep_b
    return spans


def assemble(docs: TokenizedDocuments, spans: InstanceSpans, cls_id: int, sep_id: int):
    """Flat ids of `[CLS] A [SEP] B [SEP]` per instance, their offsets, and the matching flat word starts."""
    lengths = spans.a_len + spans.b_len + 3
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.empty(offsets[-1], dtype=docs.ids.dtype)
    starts = offsets[:-1]
    ids[starts] = cls_id
    ids[starts + spans.a_len + 1] = sep_id
    ids[offsets[1:] - 1] = sep_id
    word_starts = np.ones(offsets[-1], dtype=bool) if docs.word_starts is not None else None
    for src_start, n, dst_start in (
        (spans.a_start, spans.a_len, starts + 1),
        (spans.b_start, spans.b_len, starts + spans.a_len + 2),
    ):
        step = ragged_arange(n)
        src = np.repeat(src_start, n) + step
        dst = np.repeat(dst_start, n) + step
        ids[dst] = docs.ids[src]
        if word_starts is not None:
            # A segment's first token always starts a word, even when truncation cut into the word.
            word_starts[dst] = docs.word_starts[src] | (step == 0)
    return ids, offsets, word_starts
