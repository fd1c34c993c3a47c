"""Extractive QA scores, each computed as its official script computes it, so that published numbers compare.

- SQuAD v1.1: `evaluate-v1.1.py` (Rajpurkar et al., https://rajpurkar.github.io/SQuAD-explorer/): answers are
  normalised (lower case, ASCII punctuation and English articles removed, whitespace collapsed); EM and bag-of-
  tokens F1 take the best gold answer; an unanswered question scores 0.
- SQuAD v2.0: `evaluate-v2.0.py` (same site): gold answers that normalise to nothing are dropped, a question with
  none is answered correctly only by ""; `exact`/`f1` overall and split into HasAns/NoAns; with no-answer
  probabilities, `best_*` and `best_*_thresh` as its `find_all_best_thresh` finds them.
- CMRC2018: `cmrc2018_evaluate.py` "v5 - special" (ymcui/cmrc2018, the SQuAD-style version; Python 2), ported:
  every CJK character is a token and the other runs are split by NLTK's `word_tokenize` (each run taken as one
  sentence: see `word_tokenize` for the one difference this makes); F1 comes from the longest common token
  substring; EM compares the answers with the script's punctuation removed; AVERAGE = (EM + F1) / 2.

Sums run over the questions in file order, as in the scripts, so that the scores agree to the last bit.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from bertforge.errors import BertforgeError
from bertforge.tasks.qa_readers import QaExample

log = logging.getLogger("bertforge")

KINDS = ("squad", "squad_v2", "cmrc2018")


def qa_scores(
    examples: Sequence[QaExample],
    predictions: Mapping[str, str],
    no_answer_probs: Mapping[str, float] | None = None,
    kind: str = "squad",
) -> dict[str, float]:
    """Scores of `predictions` (question id → answer text) as flat eval_results.json keys: `exact`, `f1`, `total`
    (SQuAD v1.1); the same plus `HasAns_*`, `NoAns_*` and, given `no_answer_probs`, `best_exact`, `best_f1` and
    their thresholds (v2.0); `em`, `f1`, `average`, `total`, `skip` (CMRC2018). All in percent."""
    if not examples:
        raise BertforgeError("no questions to score")
    if kind == "squad_v2":
        return squad_v2_scores(examples, predictions, no_answer_probs)
    if kind not in KINDS:
        raise BertforgeError(f"unknown QA score {kind!r}; expected one of {', '.join(KINDS)}")
    if no_answer_probs is not None:
        raise BertforgeError(f"{kind} has no no-answer questions: no-answer probabilities are scored by squad_v2")
    return squad_v1_scores(examples, predictions) if kind == "squad" else cmrc2018_scores(examples, predictions)


# --- SQuAD ---------------------------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation, in its order: lower case, drop ASCII punctuation, articles → space, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    same = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(prediction_tokens)
    recall = 1.0 * same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1_scores(examples: Sequence[QaExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 EM and F1 (`evaluate-v1.1.py`): every question needs a gold answer; unanswered ones score 0."""
    exact = f1 = 0
    for golds, answer in _answered(examples, predictions, "SQuAD v1.1 scores need one (use squad_v2)"):
        prediction = normalize_answer(answer)
        exact += max(prediction == normalize_answer(gold) for gold in golds)
        f1 += max(_overlap_f1(prediction.split(), normalize_answer(gold).split()) for gold in golds)
    total = len(examples)
    return {"exact": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": total}


def _v2_f1(prediction: str, gold: str) -> float:
    """v2.0's F1 differs from v1.1's only for an empty side: 1 when both are empty, else 0."""
    prediction_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not prediction_tokens or not gold_tokens:
        return int(prediction_tokens == gold_tokens)
    return _overlap_f1(prediction_tokens, gold_tokens)


def squad_v2_scores(
    examples: Sequence[QaExample],
    predictions: Mapping[str, str],
    no_answer_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 scores (`evaluate-v2.0.py`). As there, a question whose no-answer probability exceeds
    `na_prob_thresh` counts as answered "" in `exact`/`f1`, and `best_*` are only computed from given
    probabilities. The script fails on a question without a prediction (or probability); so does this."""
    _require_all(examples, predictions, "prediction")
    probs = no_answer_probs if no_answer_probs is not None else {example.qid: 0.0 for example in examples}
    _require_all(examples, probs, "no-answer probability")
    has_answer = {example.qid: bool(example.answers) for example in examples}
    exact_raw, f1_raw = {}, {}
    for example in examples:
        golds = [text for text, _ in example.answers if normalize_answer(text)] or [""]
        prediction = predictions[example.qid]
        exact_raw[example.qid] = max(int(normalize_answer(prediction) == normalize_answer(gold)) for gold in golds)
        f1_raw[example.qid] = max(_v2_f1(prediction, gold) for gold in golds)

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {qid: float(not has_answer[qid]) if probs[qid] > na_prob_thresh else s for qid, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    scores: dict[str, float] = {}
    groups = {"": list(has_answer), "HasAns_": [q for q, a in has_answer.items() if a]}
    groups["NoAns_"] = [q for q, a in has_answer.items() if not a]
    for prefix, qids in groups.items():
        if qids:
            scores[f"{prefix}exact"] = 100.0 * sum(exact[q] for q in qids) / len(qids)
            scores[f"{prefix}f1"] = 100.0 * sum(f1[q] for q in qids) / len(qids)
            scores[f"{prefix}total"] = len(qids)
    if no_answer_probs is not None:
        scores["best_exact"], scores["best_exact_thresh"] = _best_threshold(predictions, exact_raw, probs, has_answer)
        scores["best_f1"], scores["best_f1_thresh"] = _best_threshold(predictions, f1_raw, probs, has_answer)
    return scores


def _best_threshold(
    predictions: Mapping[str, str], raw: dict[str, float], probs: Mapping[str, float], has_answer: dict[str, bool]
) -> tuple[float, float]:
    """`find_best_thresh`: start from answering nothing (every no-answer question right), then give each question
    its predicted answer in increasing no-answer probability (ties in `probs` order, as the script's stable sort)
    and keep the best running score and the probability where it was first reached. The threshold stays 0.0 when
    answering nothing is best, even if probabilities are negative (log-odds), as in the script."""
    running = best = sum(not answered for answered in has_answer.values())
    best_thresh = 0.0
    for qid in sorted(probs, key=probs.__getitem__):
        if qid not in raw:
            continue
        if has_answer[qid]:
            running += raw[qid]
        elif predictions[qid]:  # answering a no-answer question loses its point
            running -= 1
        if running > best:
            best, best_thresh = running, probs[qid]
    return 100.0 * best / len(raw), best_thresh


# --- CMRC2018 ------------------------------------------------------------------------------------------------

# The script's punctuation list. It also holds "……", two characters, which never equals the single characters it
# is compared with: "…" is therefore kept (and reaches NLTK). ASCII . , ! ? ; ( ) ' " are not in the list either.
_CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fa5"  # the script's range: no extension A, no compatibility ideographs


def cmrc_tokens(text: str) -> list[str]:
    """`mixed_segmentation(text, rm_punc=True)`: lower-cased and stripped, the script's punctuation dropped, each
    CJK character a token, every other run between them split by NLTK's word tokenizer."""
    tokens: list[str] = []
    run: list[str] = []
    for char in text.lower().strip():
        if char in _CMRC_PUNCTUATION:
            continue
        if _is_cjk(char):
            if run:
                tokens += word_tokenize("".join(run))
                run = []
            tokens.append(char)
        else:
            run.append(char)
    if run:
        tokens += word_tokenize("".join(run))
    return tokens


def _longest_common_substring(a: list[str], b: list[str]) -> int:
    """Length of the longest run of tokens that `a` and `b` share (contiguous in both), as `find_lcs`."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def _cmrc_f1(prediction: str, gold: str) -> float:
    prediction_tokens, gold_tokens = cmrc_tokens(prediction), cmrc_tokens(gold)
    common = _longest_common_substring(gold_tokens, prediction_tokens)
    if common == 0:
        return 0
    precision = 1.0 * common / len(prediction_tokens)
    recall = 1.0 * common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _cmrc_exact_form(text: str) -> str:
    """`remove_punctuation`: lower case, strip, the script's punctuation dropped; inner spaces are kept."""
    return "".join(ch for ch in text.lower().strip() if ch not in _CMRC_PUNCTUATION)


def cmrc2018_scores(examples: Sequence[QaExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """CMRC2018 EM, F1 and AVERAGE = (EM + F1) / 2, unrounded (the script prints them with 3 decimals);
    `skip` counts unanswered questions, which score 0 and stay in `total`."""
    em = f1 = answered = 0
    for golds, prediction in _answered(examples, predictions, "CMRC2018 scores need one for every question"):
        f1 += max(_cmrc_f1(prediction, gold) for gold in golds)
        em += any(_cmrc_exact_form(gold) == _cmrc_exact_form(prediction) for gold in golds)
        answered += 1
    total = len(examples)
    em_score, f1_score = 100.0 * em / total, 100.0 * f1 / total
    return {
        "em": em_score,
        "f1": f1_score,
        "average": (em_score + f1_score) * 0.5,
        "total": total,
        "skip": total - answered,
    }


# NLTK's word tokenizer (nltk.tokenize.destructive.NLTKWordTokenizer, NLTK 3.9, Apache-2.0), which
# `word_tokenize` applies to each sentence: (pattern, replacement) rules applied in order, then a split at
# whitespace. Ported because NLTK is not a dependency; tested against NLTK's own module.
def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern), replacement) for pattern, replacement in pairs]


_QUOTES_AND_PUNCTUATION = _rules(
    # starting quotes
    (r"([«“‘„]|[`]+)", r" \1 "),
    (r"^\"", r"``"),
    (r"(``)", r" \1 "),
    (r"([ \(\[{<])(\"|\'{2})", r"\1 `` "),
    (r"(?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b", r"\1 \2"),
    # punctuation
    (r"([^\.])(\.)([\]\)}>\"\'»”’ ]*)\s*$", r"\1 \2 \3 "),
    (r"([:,])([^\d])", r" \1 \2"),
    (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "),
    (r"[;@#$%&]", r" \g<0> "),
    (r"([^\.])(\.)([\]\)}>\"\']*)\s*$", r"\1 \2\3 "),
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[*]", r" \g<0> "),
    # brackets, double dashes
    (r"[\]\[\(\)\{\}\<\>]", r" \g<0> "),
    (r"--", r" -- "),
)
_ENDING_QUOTES_AND_CONTRACTIONS = _rules(
    (r"([»”’])", r" \1 "),
    (r"''", " '' "),
    (r'"', " '' "),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
    *(
        (pattern, r" \1 \2 ")
        for pattern in (
            r"(?i)\b(can)(not)\b",
            r"(?i)\b(d)('ye)\b",
            r"(?i)\b(gim)(me)\b",
            r"(?i)\b(gon)(na)\b",
            r"(?i)\b(got)(ta)\b",
            r"(?i)\b(lem)(me)\b",
            r"(?i)\b(more)('n)\b",
            r"(?i)\b(wan)(na)(?=\s)",
            r"(?i) ('t)(is)\b",
            r"(?i) ('t)(was)\b",
        )
    ),
)


def word_tokenize(text: str) -> list[str]:
    """NLTK's `word_tokenize(text)` on one sentence. The CMRC2018 script first splits a run into sentences with
    NLTK's Punkt model, data that no package ships offline; a run is taken as one sentence, which differs only
    where a period ends a sentence inside a run ("went. she" gives "went.", not "went" and ".")."""
    for pattern, replacement in _QUOTES_AND_PUNCTUATION:
        text = pattern.sub(replacement, text)
    text = f" {text} "
    for pattern, replacement in _ENDING_QUOTES_AND_CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return text.split()


# --- shared --------------------------------------------------------------------------------------------------


def _require_all(examples: Sequence[QaExample], values: Mapping[str, object], what: str) -> None:
    missing = [example.qid for example in examples if example.qid not in values]
    if missing:
        raise BertforgeError(
            f"{len(missing)} of {len(examples)} questions have no {what} (e.g. {', '.join(missing[:3])}); "
            "SQuAD v2.0 scores need one for every question"
        )


def _answered(
    examples: Sequence[QaExample], predictions: Mapping[str, str], need: str
) -> Iterator[tuple[list[str], str]]:
    """(gold answers, prediction) of each question in file order. A question without a gold answer is an error
    (`need` says why); one without a prediction scores 0 in the scripts, so it is skipped here and warned about."""
    missing = []
    for example in examples:
        golds = [text for text, _ in example.answers]
        if not golds:
            raise BertforgeError(f"{example.source}: no gold answer; {need}")
        if example.qid not in predictions:
            missing.append(example.qid)
            continue
        yield golds, predictions[example.qid]
    _warn_missing(missing)


def _warn_missing(missing: list[str]) -> None:
    if missing:
        log.warning("%d questions have no prediction and score 0 (e.g. %s)", len(missing), ", ".join(missing[:3]))
