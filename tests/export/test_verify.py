"""The export gates of `bertforge.export.verify`, each triggered on purpose by a candidate backend that is the
PyTorch model with a known fault: fp32 fails on the *largest* output difference (one output of one row off
is enough), fp32 fails on a dev metric moved by more than 0.1 point, and a quantized model moved by more than
0.5 point is a warning, not a failure. (test_onnx.py's only failing case set the tolerance to -1, which a gate
on the smallest difference also passes.)"""

import logging
import re

import numpy as np
import pytest

from bertforge.errors import BertforgeError
from bertforge.export.verify import FP32_TOLERANCE, verify
from bertforge.inference import Predictor
from tests.export.test_onnx import model_folder


class OneRowOff:
    """The reference's outputs with `delta` added to one output of the first row of the first batch only."""

    def __init__(self, reference, delta: float):
        self.reference, self.delta, self.calls = reference, delta, 0

    def __call__(self, batch):
        out = self.reference(batch)
        if self.calls == 0:
            name = sorted(out)[-1]
            out[name] = out[name].copy()
            out[name][0] += self.delta
        self.calls += 1
        return out


def shifted_logits(reference):
    """Every class's logit moved to the next class: every prediction changes."""
    return lambda batch: {k: np.roll(v, 1, axis=-1) for k, v in reference(batch).items()}


@pytest.fixture(scope="module")
def qa(sample, tmp_path_factory):
    return Predictor.from_pretrained(model_folder(tmp_path_factory.mktemp("qa"), "qa", sample("vocab-en")))


@pytest.fixture(scope="module")
def classifier(sample, tmp_path_factory):
    """A 3-class model and a dev file of 12 rows, most of them one label (so a shifted prediction moves the
    accuracy)."""
    root = tmp_path_factory.mktemp("classification")
    predictor = Predictor.from_pretrained(model_folder(root, "classification", sample("vocab-en")))
    words = ["good", "bad", "average", "great", "dull", "fine"]
    animals, labels = ["cats"] * 6 + ["dogs"] * 6, ["pos"] * 8 + ["neg", "neutral"] * 2
    rows = [(f"a {w} film about {v}", label) for w, v, label in zip(words * 2, animals, labels)]
    (root / "dev.csv").write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return predictor, root / "dev.csv"


def _verify(predictor, candidates, dev=None, reference=None):
    reference = reference or predictor.backend
    return verify(predictor.task, predictor.settings, predictor.tokenizer, reference, candidates, dev)


def test_fp32_fails_on_the_largest_difference_of_any_output_and_row(qa):
    assert len(qa.backend(qa_batch(qa)).keys()) > 1  # several outputs: the gate must take the worst of them
    report = _verify(qa, {"fp32": OneRowOff(qa.backend, 0.0)})
    assert max(report["fp32"]["max_abs_diff"].values()) == 0.0
    with pytest.raises(BertforgeError, match=r"the fp32 ONNX model differs from PyTorch by 1\.00e-03 \(> 0\.0001\)"):
        _verify(qa, {"fp32": OneRowOff(qa.backend, 1e-3)})
    assert 10 * FP32_TOLERANCE == pytest.approx(1e-3)


def qa_batch(predictor):
    ids = np.array([[101, 2054, 102, 2023, 102]], dtype=np.int64)
    return {"input_ids": ids, "token_type_ids": np.array([[0, 0, 0, 1, 1]]), "attention_mask": np.ones_like(ids)}


def _accuracy(predictor, backend, dev) -> float:
    """The dev accuracy by hand: argmax of the backend's logits, one row at a time."""
    lines = dev.read_text().splitlines()[1:]
    labels = predictor.settings.labels
    right = 0
    for line in lines:
        text, label = line.rsplit(",", 1)
        ids = [101, *predictor.tokenizer.convert_tokens_to_ids(predictor.tokenizer.tokenize(text)), 102]
        batch = {"input_ids": np.array([ids]), "token_type_ids": np.zeros((1, len(ids)), np.int64),
                 "attention_mask": np.ones((1, len(ids)), np.int64)}  # fmt: skip
        right += labels[int(backend(batch)["logits"][0].argmax())] == label
    return right / len(lines)


def test_fp32_fails_on_a_dev_metric_off_by_more_than_a_tenth_of_a_point(classifier, monkeypatch):
    predictor, dev = classifier
    wrong = shifted_logits(predictor.backend)
    torch_acc, wrong_acc = _accuracy(predictor, predictor.backend, dev), _accuracy(predictor, wrong, dev)
    assert torch_acc != wrong_acc  # the fault moves the metric
    report = _verify(predictor, {"fp32": predictor.backend}, dev)
    assert report["fp32"]["dev"]["torch"]["accuracy"] == pytest.approx(torch_acc)
    monkeypatch.setattr("bertforge.export.verify.FP32_TOLERANCE", float("inf"))  # the metric gate alone
    points = (wrong_acc - torch_acc) * 100
    expected = f"dev accuracy differs from PyTorch's by {points:+.2f} points (> 0.1)"
    with pytest.raises(BertforgeError, match=re.escape(expected)):
        _verify(predictor, {"fp32": wrong}, dev)


@pytest.mark.parametrize("worse", [True, False])
def test_a_quantized_model_off_by_more_than_half_a_point_is_a_warning(classifier, caplog, worse):
    """Either way: the shifted model against the true one, and (by swapping which is the reference) the true
    one against the shifted one, so that one of the two loses accuracy."""
    predictor, dev = classifier
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        report = _verify(predictor, {"int8": predictor.backend}, dev)
    assert report["int8"]["dev"]["delta_points"] == 0.0 and "consider the fp32 export" not in caplog.text
    shifted = shifted_logits(predictor.backend)
    reference, candidate = (shifted, predictor.backend) if worse else (predictor.backend, shifted)
    expected = (_accuracy(predictor, candidate, dev) - _accuracy(predictor, reference, dev)) * 100
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        report = _verify(predictor, {"int8": candidate}, dev, reference)  # no exception
    delta = report["int8"]["dev"]["delta_points"]
    assert delta == pytest.approx(expected) and abs(delta) > 0.5
    assert f"int8: dev accuracy {delta:+.2f} points from PyTorch's (more than 0.5); consider the fp32" in caplog.text
