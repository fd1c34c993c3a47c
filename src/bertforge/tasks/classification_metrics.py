"""Evaluation metrics of the GLUE/CLUE tasks in plain numpy, named like the model zoo's
``--assessment-method`` (accuracy, f1, mcc, spearman_correlation) and printed in its format.

Degenerate inputs give 0, not NaN: a constant prediction has no correlation with the labels (MCC,
Pearson, Spearman) and a class never predicted nor present has F1 0, so "best checkpoint" comparisons work.
"""

from __future__ import annotations

import numpy as np

from bertforge.errors import BertforgeError

# assessment method -> the key of its main metric in `compute_metrics`' result
METHODS: dict[str, str] = {"accuracy": "accuracy", "f1": "f1", "mcc": "mcc", "spearman_correlation": "spearman"}


def accuracy(predictions, labels) -> float:
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def precision_recall_f1(predictions, labels, positive_label=1) -> tuple[float, float, float]:
    """Precision, recall and F1 of class `positive_label` against all others (0 where undefined)."""
    predictions, labels = _pair(predictions, labels)
    predicted, actual = predictions == positive_label, labels == positive_label
    tp = int(np.sum(predicted & actual))
    fp, fn = int(np.sum(predicted)) - tp, int(np.sum(actual)) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1_score = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return precision, recall, f1_score


def f1(predictions, labels, *, average: str = "binary", positive_label=1) -> float:
    """Binary F1 of `positive_label`, or (average="macro") the mean F1 over every class that occurs in
    the labels or the predictions."""
    predictions, labels = _pair(predictions, labels)
    if average == "binary":
        return precision_recall_f1(predictions, labels, positive_label)[2]
    if average == "macro":
        classes = np.union1d(predictions, labels)
        return float(np.mean([precision_recall_f1(predictions, labels, c)[2] for c in classes]))
    raise BertforgeError(f"f1: average {average!r} is not 'binary' or 'macro'")


def mcc(predictions, labels) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004): from the confusion matrix C,
    (c·s − t·p) / sqrt((s² − p·p)(s² − t·t)) with t, p the true/predicted class counts, c = trace, s = n."""
    predictions, labels = _pair(predictions, labels)
    _, codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    n = len(labels)
    k = int(codes.max()) + 1
    t = np.bincount(codes[:n], minlength=k).astype(np.float64)
    p = np.bincount(codes[n:], minlength=k).astype(np.float64)
    c = float(np.sum(codes[:n] == codes[n:]))
    denominator = (n * n - p @ p) * (n * n - t @ t)
    return float((c * n - t @ p) / np.sqrt(denominator)) if denominator > 0 else 0.0


def pearson(predictions, labels) -> float:
    x, y = (np.asarray(a, dtype=np.float64) for a in _pair(predictions, labels))
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(np.clip((x @ y) / denominator, -1.0, 1.0)) if denominator > 0 else 0.0


def spearman(predictions, labels) -> float:
    """Pearson correlation of the ranks; tied values share their average rank."""
    predictions, labels = _pair(predictions, labels)
    return pearson(_ranks(predictions), _ranks(labels))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties averaged: a value's rank is the mean of the positions its run of equals takes."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def compute_metrics(method: str, predictions, labels, *, positive_label=1) -> dict[str, float]:
    """Metrics of one assessment method; its main metric is `METHODS[method]`, the rest are context.

    predictions: (N,) class ids or scores, or (N, C) logits/probabilities (argmax is taken; for
    spearman_correlation (N, 1) is a score column). labels: (N,) class ids or gold scores."""
    if method not in METHODS:
        raise BertforgeError(f"unknown assessment method {method!r}; expected one of {', '.join(METHODS)}")
    predictions = np.asarray(predictions)
    if method == "spearman_correlation":
        scores = predictions.reshape(len(predictions), -1)
        if scores.shape[1] != 1:
            raise BertforgeError(f"spearman_correlation needs one score per example, got shape {predictions.shape}")
        return {"spearman": spearman(scores[:, 0], labels), "pearson": pearson(scores[:, 0], labels)}
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    predictions, labels = _pair(predictions, labels)
    correct = int(np.sum(predictions == labels))
    counts = {"accuracy": correct / len(labels), "acc_num": correct, "total_num": len(labels)}
    if method == "accuracy":
        return {**counts, "macro_f1": f1(predictions, labels, average="macro")}
    if method == "f1":
        precision, recall, f1_score = precision_recall_f1(predictions, labels, positive_label)
        return {"precision": precision, "recall": recall, "f1": f1_score, **counts}
    return {"mcc": mcc(predictions, labels), **counts}


_LINES = {
    "precision": "Precision {:.6f}",
    "recall": "Recall {:.6f}",
    "f1": "F1 {:.6f}",
    "mcc": "MCC {:.6f}",
    "spearman": "Spearman Correlation is {:.6f}",
    "pearson": "Pearson Correlation is {:.6f}",
    "macro_f1": "Macro F1 {:.6f}",
}


def format_metrics(metrics: dict[str, float]) -> str:
    """One line per metric, worded like the model zoo's evaluation print-out
    ("acc_num 901 , total_num 1000, accuracy 0.901000", "F1 0.873000", "MCC 0.512000")."""
    lines = []
    for key, value in metrics.items():
        if key in ("acc_num", "total_num"):
            continue
        if key == "accuracy" and "acc_num" in metrics and "total_num" in metrics:
            lines.append(
                f"acc_num {int(metrics['acc_num'])} , total_num {int(metrics['total_num'])}, accuracy {value:.6f}"
            )
        else:
            lines.append(_LINES.get(key, key + " {:.6f}").format(value))
    return "\n".join(lines)


def _pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    predictions, labels = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if len(predictions) != len(labels):
        raise BertforgeError(f"{len(predictions)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise BertforgeError("no examples to score")
    return predictions, labels
