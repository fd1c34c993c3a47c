"""Metrics against scikit-learn and scipy on random inputs, ties and degenerate cases."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score

from bertforge.errors import BertforgeError
from bertforge.tasks.classification_metrics import (
    METHODS,
    accuracy,
    compute_metrics,
    f1,
    format_metrics,
    mcc,
    pearson,
    precision_recall_f1,
    spearman,
)

SEEDS = range(20)


def random_classes(seed, num_classes=None):
    rng = np.random.default_rng(seed)
    k = num_classes or int(rng.integers(2, 6))
    n = int(rng.integers(1, 60))
    return rng.integers(0, k, n), rng.integers(0, k, n)


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(seed):
    predictions, labels = random_classes(seed)
    assert accuracy(predictions, labels) == pytest.approx(accuracy_score(labels, predictions))
    assert mcc(predictions, labels) == pytest.approx(matthews_corrcoef(labels, predictions), abs=1e-12)
    macro = f1_score(labels, predictions, average="macro", zero_division=0)
    assert f1(predictions, labels, average="macro") == pytest.approx(macro)
    binary, binary_labels = random_classes(seed, num_classes=2)
    for positive in (0, 1):
        expected = [
            fn(binary_labels, binary, pos_label=positive, zero_division=0)
            for fn in (precision_score, recall_score, f1_score)
        ]
        assert precision_recall_f1(binary, binary_labels, positive) == pytest.approx(expected)
        assert f1(binary, binary_labels, positive_label=positive) == pytest.approx(expected[2])


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 80))
    labels = rng.integers(0, 6, n) / 5 * 5  # STS-B style scores: many ties
    predictions = labels + rng.normal(0, 1.5, n)
    if seed % 2:
        predictions = np.round(predictions)  # ties in the predictions too
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        pytest.skip("constant draw")
    assert pearson(predictions, labels) == pytest.approx(pearsonr(predictions, labels)[0], abs=1e-12)
    assert spearman(predictions, labels) == pytest.approx(spearmanr(predictions, labels)[0], abs=1e-12)


def test_degenerate_inputs_give_zero_not_nan():
    labels = np.array([0, 1, 1, 0, 1])
    constant = np.ones(5, dtype=int)
    assert mcc(constant, labels) == 0.0 == matthews_corrcoef(labels, constant)
    assert mcc(labels, labels) == 1.0 and mcc(1 - labels, labels) == -1.0
    with pytest.warns(Warning):  # scipy warns and answers NaN
        assert np.isnan(pearsonr(constant.astype(float), labels)[0])
    assert pearson(constant, labels) == 0.0 and spearman(constant, labels) == 0.0
    zeros = np.zeros(5, dtype=int)
    assert precision_recall_f1(zeros, zeros, 1) == (0.0, 0.0, 0.0)  # the positive class never occurs
    assert f1(zeros, zeros, average="macro") == 1.0
    assert accuracy([3], [3]) == 1.0


def test_compute_metrics():
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1])
    predictions = np.array([1, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    logits = np.eye(2)[predictions] * 3.0 - 1.0  # (N, 2): argmax gives the predictions

    result = compute_metrics("accuracy", logits, labels)
    assert result == {
        "accuracy": 0.8,
        "acc_num": 8,
        "total_num": 10,
        "macro_f1": pytest.approx(f1_score(labels, predictions, average="macro")),
    }
    result = compute_metrics("f1", predictions, labels)
    assert result["f1"] == pytest.approx(f1_score(labels, predictions))
    assert compute_metrics("f1", predictions, labels, positive_label=0)["f1"] == pytest.approx(
        f1_score(labels, predictions, pos_label=0)
    )
    assert compute_metrics("mcc", predictions, labels)["mcc"] == pytest.approx(matthews_corrcoef(labels, predictions))
    scores = np.array([[0.1], [0.5], [0.4], [0.9]])
    result = compute_metrics("spearman_correlation", scores, [0.0, 2.0, 1.0, 5.0])
    assert result == {"spearman": pytest.approx(1.0), "pearson": pytest.approx(pearsonr(scores[:, 0], [0, 2, 1, 5])[0])}
    for method, main in METHODS.items():
        assert main in compute_metrics(method, predictions, labels)

    with pytest.raises(BertforgeError, match="unknown assessment method 'auc'; expected one of accuracy, f1, mcc"):
        compute_metrics("auc", predictions, labels)
    with pytest.raises(BertforgeError, match="9 predictions for 10 labels"):
        compute_metrics("accuracy", predictions[:9], labels)
    with pytest.raises(BertforgeError, match="no examples to score"):
        compute_metrics("mcc", [], [])
    with pytest.raises(BertforgeError, match="one score per example"):
        compute_metrics("spearman_correlation", logits, labels)


def test_format_metrics_like_the_model_zoo():
    labels = np.array([1] * 901 + [0] * 99)
    predictions = np.ones(1000, dtype=int)
    predictions[:99] = 0  # 99 wrong ones among the 1s, all 0s wrong
    text = format_metrics(compute_metrics("accuracy", predictions, labels))
    assert text.splitlines()[0] == "acc_num 802 , total_num 1000, accuracy 0.802000"
    assert text.splitlines()[1].startswith("Macro F1 ")
    lines = format_metrics({"precision": 0.5, "recall": 0.25, "f1": 1 / 3}).splitlines()
    assert lines == ["Precision 0.500000", "Recall 0.250000", "F1 0.333333"]
    assert format_metrics({"mcc": 0.5, "spearman": 0.25, "loss": 1.5}) == (
        "MCC 0.500000\nSpearman Correlation is 0.250000\nloss 1.500000"
    )
