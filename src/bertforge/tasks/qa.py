"""Extractive question answering as a task: SQuAD v1.1 and v2.0, CMRC2018, DRCD (the SQuAD layout).

A question and its context become `[CLS] question [SEP] window [SEP]` features, one per window of context
word-pieces (`doc_stride` pieces between window starts, Google's meaning: `transformers`' run_qa uses the same
flag for the overlap). Every context piece keeps its character span in the raw context, so an answer comes back
as an exact substring of it in any script. In training a window that does not hold the whole answer targets
`[CLS]`, as in Google's and Hugging Face's recipes.

Post-processing is vectorised per window: all (start, end) pairs with the start in the window's max-context run
(Google's `_check_is_max_context`), the end in the window's context and at most `max_answer_length` pieces long
are scored at once (start + end logit) and the `n_best_size` best kept; an example's windows are merged as soon
as they are done (per chunk of inputs, so memory does not grow with the evaluation set). For v2.0 the null score
is the lowest `[CLS]` score over the windows; "no answer" wins when it beats the best span by more than the
threshold, which evaluation tunes on the dev set (the official script's `best_f1_thresh`) and the model folder
keeps for `predict`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.model_folder import ModelSettings
from bertforge.modeling.heads import BertForQuestionAnswering
from bertforge.tasks.qa_metrics import cmrc2018_scores, squad_v1_scores, squad_v2_scores
from bertforge.tasks.qa_readers import QaExample, read_qa
from bertforge.tasks.qa_serving import SERVING
from bertforge.tasks.settings import INFERENCE, MODEL, setting
from bertforge.tasks.task import Features, Task, TaskConfig
from bertforge.tasks.windows import best_windows, windows
from bertforge.tokenization import CLS, SEP, FullTokenizer

log = logging.getLogger("bertforge")

METRICS = ("auto", "squad", "squad_v2", "cmrc2018")


@dataclass
class QaConfig(TaskConfig):
    format: str = setting("squad", scope=MODEL)  # the SQuAD layout (SQuAD v1.1/v2.0, CMRC2018, DRCD, MLQA, XQuAD)
    max_seq_length: int = setting(384, low=3)
    # f1, exact (SQuAD), em, average (CMRC2018), best_f1 (v2.0, tuned threshold)
    assessment_method: str = setting("f1", choices=("f1", "exact", "em", "average", "best_f1"))
    eval_batch_size: int = setting(32, low=1)
    doc_stride: int = setting(128, scope=INFERENCE, low=1)  # context pieces between the starts of windows
    max_query_length: int = setting(64, scope=INFERENCE, low=1)  # longer questions are cut to this (counted)
    n_best_size: int = setting(20, scope=INFERENCE, low=1)
    max_answer_length: int = setting(30, scope=INFERENCE, low=1)  # in word-pieces
    # Questions may have no answer; None: if the train file has any.
    version_2_with_negative: bool | None = setting(None, scope=MODEL)
    # squad, squad_v2, cmrc2018; auto: squad_v2 for v2 data, cmrc2018 for Chinese, else squad.
    metric: str = setting("auto", scope=MODEL, choices=METRICS)
    # v2.0: "no answer" wins when its score beats the best span's by more than this. None: tuned on dev when
    # fine-tuning (the official script's best_f1_thresh, kept with the model), else the model's, else 0.
    null_threshold: float | None = setting(None, scope=INFERENCE)
    tune_threshold: bool = True  # v2.0: tune the threshold on dev unless null_threshold is given

    def check(self, max_seq_length: int, labels: list[str] | None = None) -> None:
        """The window left for context must exceed the stride, or windows would skip context."""
        window = max_seq_length - self.max_query_length - 3
        if window < 1:
            raise BertforgeError(
                f"max_seq_length {max_seq_length} leaves no room for context after a question of up to "
                f"task.max_query_length {self.max_query_length} pieces and 3 special tokens"
            )
        if not self.doc_stride < window:
            raise BertforgeError(
                f"task.doc_stride must be smaller than the context window, {window} pieces (max_seq_length "
                f"{max_seq_length} - max_query_length {self.max_query_length} - 3), got {self.doc_stride}"
            )


@dataclass
class QaPrediction:
    """The answer as users get it, plus what the official files and scores need."""

    answer: str  # "" for "no answer" (v2.0)
    score: float  # probability of the answer among the n-best (and the null answer, for v2.0)
    start: int  # character offsets into the context; 0, 0 for "no answer"
    end: int
    best_span: str  # the best non-null answer (what the v2.0 threshold is tuned on)
    nbest: list[dict[str, Any]]
    null_odds: float | None  # null score minus the best span's score (v2.0 models)

    def present(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end}


# ------------------------------------------------------------------------------------------- reading, settings
def read(path: str, tc: QaConfig) -> list[QaExample]:
    examples, report = read_qa(path, skip_bad_lines=tc.skip_bad_lines)
    if report.skipped or report.unlabelled:
        log.info(report.summary())
    return examples


def prepare(tc: QaConfig, train: list[QaExample], init: ModelSettings | None) -> ModelSettings:
    """v2.0 (questions without answers) and the metric from the config, else the initial QA model's, else the
    training data; decoding settings from the config (the threshold: the model's tuned one unless given)."""
    saved = init.task if init is not None and not train else None
    v2 = tc.version_2_with_negative
    if v2 is None:
        v2 = saved.version_2_with_negative if saved is not None else any(e.is_impossible for e in train)
    metric = tc.metric if tc.metric != "auto" else (saved.metric if saved is not None else _metric(train, bool(v2)))
    fixed = tc.null_threshold is not None
    task = dataclasses.replace(
        tc,
        version_2_with_negative=bool(v2),
        metric=metric,
        null_threshold=tc.null_threshold if fixed or saved is None else saved.null_threshold,
        tune_threshold=tc.tune_threshold and not fixed,
    )
    return ModelSettings(kind="qa", labels=None, max_seq_length=tc.max_seq_length, task=task)


def _metric(examples: Sequence[QaExample], v2: bool) -> str:
    if v2:
        return "squad_v2"
    text = "".join(e.context[:200] for e in examples[:200])
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in text)
    return "cmrc2018" if text and cjk > len(text) / 3 else "squad"


def null_threshold(settings: ModelSettings) -> float:
    """The model's no-answer threshold: the one given or tuned, else 0."""
    return 0.0 if settings.task.null_threshold is None else settings.task.null_threshold


def tune(settings: ModelSettings, metrics: dict[str, float]) -> ModelSettings:
    """v2.0: the no-answer threshold that maximised dev F1 becomes the model's."""
    if not settings.task.tune_threshold or "best_f1_thresh" not in metrics:
        return settings
    tuned = dataclasses.replace(settings.task, null_threshold=metrics["best_f1_thresh"])
    return dataclasses.replace(settings, task=tuned)


def example(raw: Any, index: str) -> QaExample:
    """{"question", "context"[, "id"]} or a (question, context) pair."""
    if isinstance(raw, tuple) and len(raw) == 2:
        raw = {"question": raw[0], "context": raw[1]}
    if not isinstance(raw, dict):
        raise BertforgeError(f'expected {{"question", "context"}} or a (question, context) pair, got {str(raw)[:60]!r}')
    for name in ("question", "context"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise BertforgeError(f"empty or missing {name!r} (fields: {', '.join(raw) or 'none'})")
    guid = str(raw.get("id", index))
    return QaExample(guid, raw["question"], raw["context"], [], False, f"input {index}")


# ------------------------------------------------------------------------------------------- features
def featurize(
    examples: Sequence[QaExample], tokenizer: FullTokenizer, settings: ModelSettings, max_seq_length: int
) -> Features:
    """One feature per window. meta["window"]: [input position of the window's first context piece, that
    piece's index in the context]; meta["owned"]: [first, last+1) input positions whose window this is (max
    context); meta["offsets"]: the character spans of the window's context pieces, flat [start, end, ...]."""
    task = settings.task
    stride, max_query = task.doc_stride, task.max_query_length
    cls, sep = tokenizer.vocab[CLS], tokenizer.vocab[SEP]
    questions = tokenizer.ids_batch([e.question for e in examples])
    contexts = tokenizer.ids_and_offsets_batch([e.context for e in examples])
    unlabelled = [e for e in examples if not e.labelled]
    if unlabelled and len(unlabelled) < len(examples):  # a mix: neither a labelled file nor a test file
        raise BertforgeError(
            f"{unlabelled[0].source}: no answer (and not is_impossible), but other questions have one "
            f"({len(unlabelled)} of {len(examples)} unanswered); answer or remove them, or mark them "
            "is_impossible (SQuAD v2.0)"
        )
    labelled = bool(examples) and not unlabelled
    inputs: dict[str, list] = {"input_ids": [], "token_type_ids": []}
    if labelled:
        inputs |= {"start_positions": [], "end_positions": []}
    meta: dict[str, list] = {"window": [], "owned": [], "offsets": []}
    example_index, num_truncated = [], 0
    for n, (e, question, (pieces, offsets)) in enumerate(zip(examples, questions, contexts)):
        if len(question) > max_seq_length - 3:
            raise BertforgeError(
                f"{e.source}: the question has {len(question)} word-pieces, more than max_seq_length "
                f"{max_seq_length} holds; is it the context?"
            )
        if not pieces:
            raise BertforgeError(f"{e.source}: the context has no text the tokenizer keeps")
        num_truncated += len(question) > max_query
        question = question[:max_query]
        width = max_seq_length - len(question) - 3
        if stride >= width:
            raise BertforgeError(f"doc_stride {stride} is not smaller than the context window ({width} pieces)")
        spans = windows(len(pieces), width, stride)
        owner = np.asarray(best_windows(range(len(pieces)), spans))
        answer = _answer_pieces(e, offsets) if labelled else None
        first = len(question) + 2
        for w, (s, t) in enumerate(spans):
            inputs["input_ids"].append([cls, *question, sep, *pieces[s:t], sep])
            inputs["token_type_ids"].append([0] * first + [1] * (t - s + 1))
            mine = np.flatnonzero(owner == w)  # one contiguous run (possibly none)
            lo, hi = (int(mine[0]), int(mine[-1]) + 1) if mine.size else (s, s)
            meta["window"].append([first, s])
            meta["owned"].append([first + lo - s, first + hi - s])
            meta["offsets"].append([x for o in offsets[s:t] for x in o])  # flat: a fraction of the memory
            example_index.append(n)
            if labelled:
                inside = answer is not None and s <= answer[0] and answer[1] < t
                inputs["start_positions"].append(first + answer[0] - s if inside else 0)
                inputs["end_positions"].append(first + answer[1] - s if inside else 0)
    return Features(inputs, example_index, num_truncated, meta)


def _answer_pieces(e: QaExample, offsets: list[tuple[int, int]]) -> tuple[int, int] | None:
    """First and last context piece of the (first) answer: the pieces its characters overlap."""
    if not e.answers:
        return None
    text, start = e.answers[0]
    end = start + len(text)
    hit = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not hit:
        raise BertforgeError(f"{e.source}: the answer {text!r} has no text the tokenizer keeps")
    return hit[0], hit[-1]


# ------------------------------------------------------------------------------------------- post-processing
BLOCK = 64  # windows scored at once: (BLOCK, length, max_answer_length) float64 scores, 6 MB at 384 × 30


def top_spans(
    start_logits: np.ndarray, end_logits: np.ndarray, lengths: np.ndarray, owned: np.ndarray, max_len: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `k` best (score, start, end) of each window, best first, for windows padded to one width: start in
    `owned[w]`, start <= end < the window's final [SEP] (`lengths[w] - 1`), end - start < `max_len`; ties in
    (start, end) order; (-inf, 0, 0) where a window has fewer than `k` spans. Each (W,) or (W, k)."""
    width = start_logits.shape[1]
    padded = np.concatenate([end_logits, np.zeros((len(end_logits), max_len))], axis=1)
    band = np.lib.stride_tricks.sliding_window_view(padded, max_len, axis=1)[:, :width]  # [w, i, j] = end[w, i + j]
    pos = np.arange(width)
    start_ok = (pos >= owned[:, :1]) & (pos < owned[:, 1:])
    end_ok = pos[None, :, None] + np.arange(max_len)[None, None, :] < (lengths - 1)[:, None, None]
    scores = np.where(start_ok[:, :, None] & end_ok, start_logits[:, :, None] + band, -np.inf).reshape(len(lengths), -1)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -values), axis=-1)
    top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
    return values, top // max_len, top // max_len + top % max_len


def postprocess(examples: Sequence[QaExample], features: Features, outputs, settings: ModelSettings) -> list:
    """Each example's n-best spans over its windows, its answer and, for v2.0, the null odds."""
    task = settings.task
    k, max_len = task.n_best_size, task.max_answer_length
    v2, threshold = bool(task.version_2_with_negative), null_threshold(settings)
    count = len(outputs)
    scores, starts, ends = np.full((count, k), -np.inf), np.zeros((count, k), np.int64), np.zeros((count, k), np.int64)
    null = np.full(len(examples), np.inf)
    for lo in range(0, count, BLOCK):
        block = outputs[lo : lo + BLOCK]
        lengths = np.array([len(out["start_logits"]) for out in block])
        s, e = np.zeros((len(block), lengths.max())), np.zeros((len(block), lengths.max()))
        for row, out in enumerate(block):
            s[row, : lengths[row]], e[row, : lengths[row]] = out["start_logits"], out["end_logits"]
        owned = np.asarray(features.meta["owned"][lo : lo + BLOCK], dtype=np.int64)
        found = top_spans(s, e, lengths, owned, max_len, k)
        width = found[0].shape[1]
        (
            scores[lo : lo + len(block), :width],
            starts[lo : lo + len(block), :width],
            ends[lo : lo + len(block), :width],
        ) = found
        np.minimum.at(null, features.example_index[lo : lo + BLOCK], s[:, 0] + e[:, 0])
    windows_of: list[list[int]] = [[] for _ in examples]
    for f, n in enumerate(features.example_index):
        windows_of[n].append(f)
    results = []
    for n, (ex, mine) in enumerate(zip(examples, windows_of)):
        candidates = scores[mine].ravel()  # window by window, each best first: a stable sort keeps window order
        order = np.argsort(-candidates, kind="stable")[:k]
        order = order[np.isfinite(candidates[order])]
        nbest = []
        for i in order.tolist():
            f, j = mine[i // k], i % k
            first, offsets = features.meta["window"][f][0], features.meta["offsets"][f]
            a, b = offsets[2 * (starts[f, j] - first)], offsets[2 * (ends[f, j] - first) + 1]
            nbest.append({"text": ex.context[a:b], "score": float(candidates[i]), "start": a, "end": b})
        total = [c["score"] for c in nbest] + ([float(null[n])] if v2 else [])
        z = np.exp(np.asarray(total) - max(total))
        probs = z / z.sum()
        for c, p in zip(nbest, probs):
            c["probability"] = float(p)
        best = nbest[0] if nbest else None
        null_odds = float(null[n] - best["score"]) if v2 and best else (0.0 if v2 else None)
        if best is None or (v2 and null_odds > threshold):
            answer = ("", float(probs[-1]) if v2 else 0.0, 0, 0)
        else:
            answer = (best["text"], best["probability"], best["start"], best["end"])
        results.append(QaPrediction(*answer, best["text"] if best else "", nbest, null_odds))
    return results


# ------------------------------------------------------------------------------------------- scores, files
def score(results: list, examples: Sequence[QaExample], settings: ModelSettings, method: str) -> dict[str, float]:
    """The official script's scores for the model's metric (SQuAD v1.1, v2.0 with the threshold, CMRC2018)."""
    if any(not e.labelled for e in examples):
        raise BertforgeError(f"{examples[0].source.rsplit(': ', 1)[0]}: questions without answers cannot be scored")
    kind = settings.task.metric
    if kind == "squad_v2":
        spans = {e.qid: r.best_span for e, r in zip(examples, results)}
        odds = {e.qid: r.null_odds for e, r in zip(examples, results)}
        metrics = squad_v2_scores(examples, spans, odds, na_prob_thresh=null_threshold(settings))
    else:
        answers = {e.qid: r.answer for e, r in zip(examples, results)}
        metrics = (cmrc2018_scores if kind == "cmrc2018" else squad_v1_scores)(examples, answers)
    if method not in metrics:
        raise BertforgeError(f"assessment method {method!r} is not a {kind} score ({', '.join(metrics)})")
    return metrics


def submissions(
    output: Path, examples: Sequence[QaExample], results: list, settings: ModelSettings, tc: QaConfig
) -> list[Path]:
    """The official formats: predictions.json (id → answer), nbest_predictions.json, null_odds.json (v2.0)."""
    files = {
        "predictions.json": {e.qid: r.answer for e, r in zip(examples, results)},
        "nbest_predictions.json": {e.qid: r.nbest for e, r in zip(examples, results)},
    }
    if settings.task.version_2_with_negative:
        files["null_odds.json"] = {e.qid: r.null_odds for e, r in zip(examples, results)}
    for name, content in files.items():
        atomic_write_text(output / name, json.dumps(content, ensure_ascii=False, indent=2) + "\n")
    return [output / name for name in files]


TASK = Task(
    kind="qa",
    config=QaConfig,
    head=BertForQuestionAnswering,
    default_method="f1",
    methods={"f1": "f1", "exact": "exact", "em": "em", "average": "average", "best_f1": "best_f1"},
    read=read,
    prepare=prepare,
    model_overrides=lambda settings: {},
    example=example,
    featurize=featurize,
    loss_count=lambda batch: torch.tensor(float(len(batch["start_positions"]))),
    postprocess=postprocess,
    score=score,
    record=QaPrediction.present,
    submissions=submissions,
    token_outputs=("start_logits", "end_logits"),
    present=QaPrediction.present,
    tune=tune,
    fields=("question", "context"),
    from_transformers=lambda config, defaults: (None, defaults),
    recipe={"train": {"epochs": 2, "batch_size": 12}, "optimizer": {"learning_rate": 3e-5}},  # Google's run_squad.py
    serving=SERVING,
    metric_points=1.0,  # the official scripts' scores are percentages
)
