"""Entity-level NER scores: conlleval's (= seqeval's default mode), seqeval's strict mode, CLUENER's official
score, and the MindSpore model zoo's token-level BF1/MF1 (reproduced for comparison only).

Scores are fractions (0.734, not 73.4); a score whose denominator is 0 is 0, as in conlleval and seqeval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.tasks.tagging import Scheme, TagBatch, batch_spans, detect_scheme, tag_batch

# The ten CLUENER2020 types, the labels its score.py averages over.
CLUENER_TYPES = (
    "address",
    "book",
    "company",
    "game",
    "government",
    "movie",
    "name",
    "organization",
    "position",
    "scene",
)


@dataclass(frozen=True)
class EntityCounts:
    """The counts behind conlleval's report: gold, predicted and correct entities per type (types sorted as
    conlleval prints them), tokens, and tokens whose predicted tag equals the gold one."""

    types: tuple[str, ...]
    gold: tuple[int, ...]
    predicted: tuple[int, ...]
    correct: tuple[int, ...]
    tokens: int
    correct_tags: int

    def overall(self) -> tuple[float, float, float]:
        """Micro precision, recall and F1 over all types."""
        return precision_recall_f1(sum(self.correct), sum(self.predicted), sum(self.gold))

    def by_type(self) -> dict[str, tuple[float, float, float]]:
        return {t: precision_recall_f1(*n) for t, *n in zip(self.types, self.correct, self.predicted, self.gold)}


def precision_recall_f1(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """The formulas of seqeval (and sklearn) in their order of operations, so the floats are bit-identical."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_counts(
    gold_seqs: Sequence[Sequence[str]],
    predicted_seqs: Sequence[Sequence[str]],
    scheme: str | Scheme | None = None,
    mode: str = "conlleval",
) -> EntityCounts:
    """Entities of gold and predicted tags read in `mode` and matched by (sentence, start, end, type).

    scheme: the tags' scheme (detected from the gold tags when None); mode: "conlleval" (= conlleval.pl and
    seqeval's default) or "strict" (= seqeval's mode="strict" with that scheme)."""
    batch = _pair(gold_seqs, predicted_seqs, scheme)
    return _counts(batch, len(gold_seqs), mode)


def _check_pairs(gold_seqs: Sequence[Sequence[str]], predicted_seqs: Sequence[Sequence[str]]) -> None:
    if not gold_seqs:
        raise BertforgeError("no sentences to score")
    if len(gold_seqs) != len(predicted_seqs):
        raise BertforgeError(f"{len(gold_seqs)} gold sentences but {len(predicted_seqs)} predicted")
    for i, (gold, predicted) in enumerate(zip(gold_seqs, predicted_seqs)):
        if len(gold) != len(predicted):
            raise BertforgeError(f"sentence {i} (from 0): {len(gold)} gold tags but {len(predicted)} predicted")


def _pair(gold_seqs, predicted_seqs, scheme) -> TagBatch:
    """Gold then predicted sentences in one batch, so both share type ids and have the same layout."""
    _check_pairs(gold_seqs, predicted_seqs)
    return tag_batch([*gold_seqs, *predicted_seqs], scheme or detect_scheme(gold_seqs))


def _counts(batch: TagBatch, num_gold: int, mode: str) -> EntityCounts:
    found = batch_spans(batch, mode)
    is_gold = found.sentence < num_gold
    # Entity key: gold-layout position of its start, its length and its type (sentences are padded alike).
    position = batch.starts[found.sentence % num_gold] + found.start
    key = (position * (len(batch.roles) + 1) + found.end - found.start) * len(batch.type_names) + found.type
    correct = np.intersect1d(key[is_gold], key[~is_gold]) % len(batch.type_names)
    per_type = [
        np.bincount(ids, minlength=len(batch.type_names))
        for ids in (found.type[is_gold], found.type[~is_gold], correct)
    ]
    used = sorted((name, i) for i, name in enumerate(batch.type_names) if per_type[0][i] or per_type[1][i])
    half = len(batch.roles) // 2  # the predicted sentences lie exactly after the gold ones
    real = ~batch.pad[:half]
    return EntityCounts(
        tuple(name for name, _ in used),
        *(tuple(int(counts[i]) for _, i in used) for counts in per_type),
        tokens=int(real.sum()),
        correct_tags=int(np.sum((batch.tags[:half] == batch.tags[half:]) & real)),
    )


def format_report(counts: EntityCounts) -> str:
    """conlleval.pl's report, character for character (percentages rounded as its printf does). Its quirks
    with degenerate type names are not reproduced: it pads names to 17 bytes (the same for ASCII names), reads
    a type named "0" as no type, and prints the line of untyped tags twice when gold and predictions have them."""
    correct, predicted, gold = sum(counts.correct), sum(counts.predicted), sum(counts.gold)
    lines = [f"processed {counts.tokens} tokens with {gold} phrases; found: {predicted} phrases; correct: {correct}."]
    if counts.tokens:
        precision, recall, fb1 = _percentages(correct, predicted, gold)
        accuracy = 100 * counts.correct_tags / counts.tokens
        lines.append(
            f"accuracy: {accuracy:6.2f}%; precision: {precision:6.2f}%; recall: {recall:6.2f}%; FB1: {fb1:6.2f}"
        )
    for type_, *n in zip(counts.types, counts.correct, counts.predicted, counts.gold):
        precision, recall, fb1 = _percentages(*n)
        lines.append(f"{type_:>17}: precision: {precision:6.2f}%; recall: {recall:6.2f}%; FB1: {fb1:6.2f}  {n[1]}")
    return "\n".join(lines) + "\n"


def _percentages(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """conlleval's arithmetic: 100*correct/found first, FB1 from the percentages."""
    precision = 100 * correct / predicted if predicted else 0.0
    recall = 100 * correct / gold if gold else 0.0
    fb1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, fb1


def cluener_scores(
    gold_seqs: Sequence[Sequence[str]],
    predicted_seqs: Sequence[Sequence[str]],
    texts: Sequence[Sequence[str]],
    scheme: str | Scheme | None = None,
    types: Sequence[str] | None = None,
    mode: str = "conlleval",
) -> dict[str, float]:
    """CLUENER2020's official score: F1 per type, averaged over the types (macro), with entities matched by
    text, not position.

    Implemented from CLUENER2020's score.py (github.com/CLUEbenchmark/CLUENER2020, "Overall@Macro" in its
    README): for each sentence and type, the *set of entity strings* predicted is compared with the gold set,
    so a right string at another place in the sentence counts as correct and a string found twice counts
    once; P, R and F1 per type come from the summed TP/FP/FN, and the score is their mean over the ten types.
    texts: each sentence's characters (a string or a list of tokens, joined without spaces as CLUENER's
    character-level text); types: the types averaged over (CLUENER_TYPES for the official score; default
    every type in the gold or predicted entities). Where score.py would divide by 0, F1 is 0.
    Returns {"cluener_f1": macro F1, "cluener_f1_<type>": F1 per type}."""
    if len(texts) != len(gold_seqs):
        raise BertforgeError(f"{len(texts)} texts for {len(gold_seqs)} sentences")
    batch = _pair(gold_seqs, predicted_seqs, scheme)
    found = batch_spans(batch, mode)
    n = len(gold_seqs)
    entities: tuple[set, set] = (set(), set())  # gold, predicted: (sentence, type, text)
    for sentence, type_, start, end in zip(*(a.tolist() for a in (found.sentence, found.type, found.start, found.end))):
        text = "".join(texts[sentence % n][start:end])
        entities[sentence >= n].add((sentence % n, batch.type_names[type_], text))
    gold, predicted = entities
    if types is None:
        types = sorted({t for _, t, _ in gold | predicted})
    tp, fp, fn = (Counter(t for _, t, _ in keys) for keys in (predicted & gold, predicted - gold, gold - predicted))
    f1 = {t: precision_recall_f1(tp[t], tp[t] + fp[t], tp[t] + fn[t])[2] for t in types}
    total = 0.0
    for t in types:  # summed in type order, as score.py does
        total += f1[t]
    return {"cluener_f1": total / len(types) if types else 0.0, **{f"cluener_f1_{t}": f1[t] for t in types}}


def _token_tags(gold_seqs, predicted_seqs) -> tuple[np.ndarray, np.ndarray]:
    """(T,) gold and predicted tag of every token."""
    _check_pairs(gold_seqs, predicted_seqs)
    return tuple(np.array([tag for seq in seqs for tag in seq], dtype=str) for seqs in (gold_seqs, predicted_seqs))


def bf1(gold_seqs: Sequence[Sequence[str]], predicted_seqs: Sequence[Sequence[str]], cls_sep: bool = True) -> float:
    """The MindSpore model zoo's "BF1" (assessment_method F1, mode "Binary"): a token-level F1 that ignores
    entity types and boundaries — a token is a true positive when gold and predicted tags are both not O,
    whatever they are (B-PER predicted for I-LOC is a hit), 2TP / (2TP + FP + FN).

    The model zoo scores every position of its fixed-length input: [CLS] and [SEP] carry their own non-O
    labels, which a trained model predicts, so with `cls_sep` each sentence adds two true positives (padding
    is labelled and predicted O and adds nothing). Not an entity score: for comparison with its reports only."""
    gold, predicted = _token_tags(gold_seqs, predicted_seqs)
    extra = 2 * len(gold_seqs) if cls_sep else 0
    tp = int(np.sum((gold != "O") & (predicted != "O"))) + extra
    fp = int(np.sum((gold == "O") & (predicted != "O")))
    fn = int(np.sum((gold != "O") & (predicted == "O")))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def mf1(gold_seqs: Sequence[Sequence[str]], predicted_seqs: Sequence[Sequence[str]], cls_sep: bool = True) -> float:
    """The MindSpore model zoo's "MF1" (assessment_method F1, mode "MultiLabel"): a token-level micro F1 over
    the non-O labels — a true positive is a token whose predicted tag equals its non-O gold tag (so B-PER for
    I-PER is both a false positive and a false negative), 2TP / (2TP + FP + FN). Boundaries and entities play no
    part. Its ConfusionMatrixMetric(skip_channel=False) drops the O column: in MindSpore the flag means the
    opposite of its name. [CLS] and [SEP] count as in `bf1`. For comparison with its reports only."""
    gold, predicted = _token_tags(gold_seqs, predicted_seqs)
    extra = 2 * len(gold_seqs) if cls_sep else 0
    hit = (gold == predicted) & (gold != "O")
    tp = int(np.sum(hit)) + extra
    fp = int(np.sum((predicted != "O") & ~hit))
    fn = int(np.sum((gold != "O") & ~hit))
    return tp * 2.0 / (tp * 2.0 + fn + fp) if tp + fp + fn else 0.0


def ner_scores(
    gold_seqs: Sequence[Sequence[str]],
    predicted_seqs: Sequence[Sequence[str]],
    scheme: str | Scheme | None = None,
    texts: Sequence[Sequence[str]] | None = None,
) -> dict[str, float]:
    """Every NER score as flat keys for eval_results.json:

    precision, recall, f1 (conlleval = seqeval default, micro), precision_<TYPE>, recall_<TYPE>, f1_<TYPE>,
    token_accuracy (conlleval's "accuracy"), gold_entities, predicted_entities, correct_entities,
    strict_precision, strict_recall, strict_f1 (seqeval strict), cluener_f1 and cluener_f1_<type> (given the
    sentences' `texts`), bf1 and mf1 (the model zoo's token-level scores, for comparison only)."""
    batch = _pair(gold_seqs, predicted_seqs, scheme)
    counts = _counts(batch, len(gold_seqs), "conlleval")
    precision, recall, f1 = counts.overall()
    result: dict[str, float] = {"precision": precision, "recall": recall, "f1": f1}
    for type_, (p, r, f) in counts.by_type().items():
        if type_:  # tags without a type have only the overall scores
            result |= {f"precision_{type_}": p, f"recall_{type_}": r, f"f1_{type_}": f}
    result |= {
        "token_accuracy": counts.correct_tags / counts.tokens if counts.tokens else 0.0,
        "gold_entities": sum(counts.gold),
        "predicted_entities": sum(counts.predicted),
        "correct_entities": sum(counts.correct),
    }
    strict = _counts(batch, len(gold_seqs), "strict").overall()
    result |= dict(zip(("strict_precision", "strict_recall", "strict_f1"), strict))
    if texts is not None:
        result |= cluener_scores(gold_seqs, predicted_seqs, texts, batch.scheme)
    result |= {"bf1": bf1(gold_seqs, predicted_seqs), "mf1": mf1(gold_seqs, predicted_seqs)}
    return result
