"""Sentence(-pair) classification and regression as a task: CLUE, GLUE and generic CSV/TSV/JSON lines.

Reading the public formats lives in `bertforge.tasks.classification_readers`, the label list in
`bertforge.tasks.labels`.
A result is Hugging Face's and TEI's shape: `[{"label", "score"}, ...]` over all labels, sorted by score,
or `{"score"}` for regression.
"""

from __future__ import annotations

import dataclasses
import itertools
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
from bertforge.modeling.heads import BertForSequenceClassification
from bertforge.tasks.classification_metrics import METHODS, compute_metrics
from bertforge.tasks.classification_readers import FORMATS, Example, read_examples, task_name
from bertforge.tasks.classification_serving import SERVING
from bertforge.tasks.labels import LabelMap
from bertforge.tasks.settings import LEARNED, MODEL, setting
from bertforge.tasks.task import Features, Task, TaskConfig, labels_of
from bertforge.tokenization import FullTokenizer

log = logging.getLogger("bertforge")

_NLI = ("contradiction", "entailment", "neutral")
_BINARY = ("0", "1")
# Fixed label lists, in the order of the reference implementations (Google BERT's and CLUE's processors).
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "cola": _BINARY,
    "sst2": _BINARY,
    "mrpc": _BINARY,
    "qqp": _BINARY,
    "wnli": _BINARY,
    "mnli": _NLI,
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "afqmc": _BINARY,
    "csl": _BINARY,
    "cmnli": _NLI,
    "ocnli": _NLI,
    "tnews": tuple(str(100 + i) for i in range(17) if i not in (5, 11)),  # 15 codes, 105 and 111 unused
    "iflytek": tuple(str(i) for i in range(119)),
}
# CLUE's field for a label's readable name, as spelled in each task's files.
_CLUE_DESC_FIELD = {"tnews": "label_desc", "iflytek": "label_des"}


@dataclass
class ClassificationConfig(TaskConfig):
    assessment_method: str = setting("accuracy", choices=tuple(METHODS))
    text_a: str | None = setting(None, scope=MODEL)  # column names for generic files (kept: export --dev reads them)
    text_b: str | None = setting(None, scope=MODEL)
    label: str | None = setting(None, scope=MODEL)
    regression: bool = setting(False, scope=MODEL)
    descriptions: dict | None = setting(None, scope=LEARNED)  # label -> readable name (CLUE's labels.json)
    pairs: bool | None = setting(None, scope=LEARNED)  # the training data had text_b (None: not recorded)

    def check(self, max_seq_length: int, labels: list[str] | None = None) -> None:
        if self.descriptions is not None and not all(isinstance(v, str) for v in self.descriptions.values()):
            raise BertforgeError("task.descriptions must map each label to its name (a string)")


def is_regression(task: str) -> bool:
    """Whether `task` predicts a score (STS-B) rather than a class."""
    fmt = FORMATS.get(task_name(task))
    return fmt is not None and fmt.regression


def fixed_labels(task: str) -> LabelMap | None:
    """The fixed label list of a CLUE/GLUE task; None for regression and generic formats."""
    name = task_name(task)
    return LabelMap(list(TASK_LABELS[name]), f"the {name} labels") if name in TASK_LABELS else None


def label_map(settings: ModelSettings) -> LabelMap | None:
    """The model's label list (None for regression)."""
    if settings.labels is None:
        return None
    return LabelMap(settings.labels, "the model's labels", dict(settings.task.descriptions or {}))


# ------------------------------------------------------------------------------------------ the task
def read(path: str, tc: ClassificationConfig) -> list[Example]:
    examples, report = read_examples(
        path,
        tc.format,
        text_a=tc.text_a,
        text_b=tc.text_b,
        label=tc.label,
        regression=tc.regression,
        skip_bad_lines=tc.skip_bad_lines,
    )
    if report.skipped or report.unlabelled:
        log.info(report.summary())
    return examples


def prepare(tc: ClassificationConfig, train: list[Example], init: ModelSettings | None) -> ModelSettings:
    """Labels from, in order: a labels file; the initial model's (when evaluating or predicting with it);
    the benchmark's fixed list; the training set. None for regression."""
    name = task_name(tc.format)
    regression = tc.regression or is_regression(name)
    labels = None
    if not regression:
        if tc.labels:
            labels = LabelMap.load(tc.labels)
        elif init is not None and init.labels and not train:
            labels = label_map(init)
        else:
            labels = fixed_labels(name) or LabelMap.from_examples(train, origin=str(tc.train))
    descriptions = labels.descriptions if labels is not None and labels.descriptions else None
    if train:
        pairs = any(e.text_b is not None for e in train)
    else:
        pairs = getattr(init.task, "pairs", None) if init is not None else None
    return ModelSettings(
        kind="classification",
        labels=None if labels is None else labels.labels,
        max_seq_length=tc.max_seq_length,
        task=dataclasses.replace(tc, regression=regression, format=name, descriptions=descriptions, pairs=pairs),
    )


def from_transformers(config, defaults: ClassificationConfig) -> tuple[list[str] | None, ClassificationConfig]:
    """A one-output head (or `problem_type` regression) predicts a score; otherwise labels from id2label."""
    if config.num_labels == 1 or config.extra.get("problem_type") == "regression":
        return None, dataclasses.replace(defaults, regression=True)
    return labels_of(config), defaults


def model_overrides(settings: ModelSettings) -> dict[str, Any]:
    if settings.labels is None:
        return {"num_labels": 1, "id2label": None}
    return {"num_labels": len(settings.labels), "id2label": dict(enumerate(settings.labels))}


def example(raw: Any, index: str) -> Example:
    """A text, a (text, text_b) pair, or a record with "text" (or "text_a"), optionally "text_b", and
    "keep_end": true to cut a text too long from its start."""
    if isinstance(raw, str):
        return Example(raw, None, None, index, f"input {index}")
    if isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(t, str) for t in raw):
        return Example(raw[0], raw[1], None, index, f"input {index}")
    if isinstance(raw, dict):
        text = raw.get("text", raw.get("text_a"))
        text_b, keep_end = raw.get("text_b"), raw.get("keep_end", False)
        if isinstance(text, str) and (text_b is None or isinstance(text_b, str)) and isinstance(keep_end, bool):
            return Example(text, text_b, None, str(raw.get("id", index)), f"input {index}", keep_end)
    raise BertforgeError(
        f'expected a text, a [text, text_b] pair or an object with "text" (and "text_b"), got {str(raw)[:60]!r}'
    )


def featurize(
    examples: Sequence[Example], tokenizer: FullTokenizer, settings: ModelSettings, max_seq_length: int
) -> Features:
    """Tokenize `examples` with Google's pair truncation; labels become class ids (or regression scores).
    Labels are left out when no example has one; a mix is an error."""
    labels = _labels(examples, label_map(settings))
    encodings: list = [None] * len(examples)
    num_truncated = 0
    # encode_batch takes all singles or all pairs, cut at one end; hand-built lists may mix them.
    for pair, keep_end in itertools.product((False, True), (False, True)):
        idx = [i for i, e in enumerate(examples) if (e.text_b is not None) == pair and e.keep_end == keep_end]
        if not idx:
            continue
        batch = tokenizer.encode_batch(
            [examples[i].text_a for i in idx],
            [examples[i].text_b for i in idx] if pair else None,
            max_seq_length,
            keep_end,
        )
        num_truncated += batch.num_truncated
        for i, enc in zip(idx, batch.encodings):
            encodings[i] = enc
    inputs = {"input_ids": [e.input_ids for e in encodings], "token_type_ids": [e.token_type_ids for e in encodings]}
    if labels is not None:
        inputs["labels"] = labels
    return Features(inputs, list(range(len(examples))), num_truncated)


def _labels(examples: Sequence[Example], labels: LabelMap | None) -> list[int] | list[float] | None:
    unlabelled = [e for e in examples if e.label is None]
    if len(unlabelled) == len(examples):
        return None
    if unlabelled:
        raise BertforgeError(
            f"{unlabelled[0].source}: no label, but other examples have one "
            f"({len(unlabelled)} of {len(examples)} unlabelled)"
        )
    if labels is not None:
        return [labels.encode(e.label, e.source) for e in examples]
    scores = []
    for e in examples:
        if not isinstance(e.label, (int, float)) or isinstance(e.label, bool):
            raise BertforgeError(
                f"{e.source}: label {e.label!r} is a class name, but no label map was given "
                f"(only regression scores go without one)"
            )
        scores.append(float(e.label))
    return scores


def postprocess(examples: Sequence[Example], features: Features, outputs, settings: ModelSettings) -> list:
    """Softmax over each example's logits: labels sorted by probability; a regression's raw score."""
    if settings.labels is None:
        return [{"score": float(out["logits"][0])} for out in outputs]
    logits = np.stack([out["logits"] for out in outputs]).astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    names = settings.labels
    return [[{"label": names[j], "score": float(row[j])} for j in np.argsort(-row, kind="stable")] for row in probs]


def score(results: list, examples: Sequence[Example], settings: ModelSettings, method: str) -> dict[str, float]:
    """Metrics of `method` (accuracy, f1, mcc, spearman_correlation) on labelled examples."""
    labels = label_map(settings)
    gold = _labels(examples, labels)
    if gold is None:
        raise BertforgeError(f"{examples[0].source}: no labels to evaluate against")
    if labels is None:
        predicted = np.array([r["score"] for r in results])[:, None]
    else:
        predicted = np.array([labels.encode(r[0]["label"]) for r in results])
    return compute_metrics(method, predicted, np.asarray(gold))


def record(result) -> dict[str, Any]:
    """{"label", "score", "probabilities": {label: p, ...}} (most probable first), or {"score"}."""
    if isinstance(result, dict):
        return dict(result)
    return {
        "label": result[0]["label"],
        "score": result[0]["score"],
        "probabilities": {r["label"]: r["score"] for r in result},
    }


def submissions(
    output: Path, examples: Sequence[Example], results: list, settings: ModelSettings, tc: ClassificationConfig
) -> list[Path]:
    """CLUE's `<task>_predict.json` for a CLUE task, GLUE's `<task>.tsv` for a GLUE task."""
    name = task_name(tc.format)
    kind = FORMATS[name].kind if name in FORMATS else None
    predicted = [r["score"] if isinstance(r, dict) else r[0]["label"] for r in results]
    if kind == "jsonl" and settings.labels is not None:
        path = output / f"{name}_predict.json"
        write_clue_submission(path, examples, predicted, name, label_map(settings))
    elif kind == "tsv":
        path = output / f"{name}.tsv"
        write_glue_predictions(path, examples, predicted)
    else:
        return []
    return [path]


def write_clue_submission(
    path: str | Path,
    examples: Sequence[Example],
    predicted_labels: Sequence[str],
    task: str,
    label_map: LabelMap | None = None,
) -> None:
    """A CLUE submission file (`<task>_predict.json`): {"id": <test id>, "label": "<label>"} per line; tnews
    and iflytek lines also carry the readable name (tnews "label_desc", iflytek "label_des") when `label_map`
    was loaded from CLUE's labels.json."""
    name = task_name(task)
    if name not in TASK_LABELS or FORMATS[name].kind != "jsonl":
        raise BertforgeError(
            f"{task!r} is not a CLUE classification task "
            f"({', '.join(t for t in TASK_LABELS if FORMATS[t].kind == 'jsonl')})"
        )
    _check_count(path, examples, predicted_labels)
    desc_field = _CLUE_DESC_FIELD.get(name)
    descriptions = label_map.descriptions if label_map is not None and desc_field else {}
    lines = []
    for example, label in zip(examples, predicted_labels):
        record = {"id": int(example.guid) if example.guid.isdigit() else example.guid, "label": str(label)}
        if str(label) in descriptions:
            record[desc_field] = descriptions[str(label)]
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def write_glue_predictions(
    path: str | Path, examples: Sequence[Example], predictions: Sequence[str] | Sequence[float]
) -> None:
    """A GLUE submission TSV (`index<TAB>prediction`): the test file's index, and a label name or a score."""
    _check_count(path, examples, predictions)
    rows = ["index\tprediction\n"]
    for example, p in zip(examples, predictions):
        value = p if isinstance(p, str) else f"{float(p):.6g}"
        rows.append(f"{example.guid}\t{value}\n")
    atomic_write_text(path, "".join(rows))


def _check_count(path: str | Path, examples: Sequence[Example], predictions: Sequence | np.ndarray) -> None:
    if len(predictions) != len(examples):
        raise BertforgeError(f"{path}: {len(predictions)} predictions for {len(examples)} examples")


TASK = Task(
    kind="classification",
    config=ClassificationConfig,
    head=BertForSequenceClassification,
    default_method="accuracy",
    methods=METHODS,
    read=read,
    prepare=prepare,
    model_overrides=model_overrides,
    example=example,
    featurize=featurize,
    loss_count=lambda batch: torch.tensor(float(len(batch["labels"]))),
    postprocess=postprocess,
    score=score,
    record=record,
    submissions=submissions,
    from_transformers=from_transformers,
    serving=SERVING,
)
