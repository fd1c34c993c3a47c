"""The exported model beside the PyTorch one on real inputs of the task: the largest output difference, the
share of identical predictions (through the task's own post-processing), and with a dev file the task metric
of both. fp32 must match (`FP32_TOLERANCE`, `FP32_METRIC_POINTS`); a quantized model's deltas are reported,
with a warning above `QUANTIZED_METRIC_POINTS`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.inference.predictor import Predictor, run_features
from bertforge.model_folder import ModelSettings
from bertforge.tasks.task import MODEL_INPUTS, Task
from bertforge.tokenization import FullTokenizer

log = logging.getLogger("bertforge")

REPORT_FILE = "export_report.json"
FP32_TOLERANCE = 1e-4  # max |Δ| of any output
FP32_METRIC_POINTS = 0.1
QUANTIZED_METRIC_POINTS = 0.5
FULL_PRECISION = ("fp32", "portable")  # the optimized and the portable graph: held to FP32_TOLERANCE
BATCH_SIZE = 4  # several rows of different lengths per batch: padding and the dynamic batch are exercised
DEV_SAMPLE = 64  # with a dev file, its first examples are the ones compared output by output

SENTENCES = (
    "Good.",
    "The film was a delight from start to finish.",
    "I would not recommend this hotel to anyone: the rooms were dirty and the staff rude.",
    "王芳在深圳学习。",
    "After three hours of waiting at the station, the train finally arrived, and it was worth every minute "
    "because the view of the mountains along the valley was breathtaking.",
    "Neither the acting nor the script could save it.",
    "江泽民在北京会见了来自上海的代表团，讨论了中国人民银行的改革。",
    "Paris is the capital of France and its largest city, home to more than two million people.",
)


def sample_inputs(task: Task) -> list[Any]:
    """Raw inputs of the task (records with its fields) of varied lengths, in two scripts."""
    if task.samples is not None:
        return task.samples(SENTENCES)
    n = len(SENTENCES)
    return [{name: SENTENCES[(i + 3 * j) % n] for j, name in enumerate(task.fields)} for i in range(n)]


def _decision(record: dict[str, Any]) -> Any:
    """What a prediction decides (a label, entity spans, an answer), without its confidence. A regression's
    score is its decision; it is compared through the outputs' |Δ| instead."""
    if isinstance(record, dict):
        return {k: _decision(v) for k, v in record.items() if k not in ("score", "scores", "probabilities")}
    if isinstance(record, list):
        return [_decision(x) for x in record]
    return record


def compare(task: Task, settings: ModelSettings, tokenizer: FullTokenizer, reference, candidate, examples) -> dict:
    """max |Δ| per output and the share of identical predictions, `candidate` against `reference`."""
    features = task.featurize(examples, tokenizer, settings, settings.max_seq_length)
    ours, theirs = (run_features(b, features, BATCH_SIZE, task.token_outputs) for b in (reference, candidate))
    diff = {name: max(float(np.abs(a[name] - b[name]).max()) for a, b in zip(ours, theirs)) for name in ours[0]}
    decided = [
        [_decision(task.record(r)) for r in task.postprocess(examples, features, outputs, settings)]
        for outputs in (ours, theirs)
    ]
    agree = sum(a == b for a, b in zip(*decided))
    return {"examples": len(examples), "max_abs_diff": diff, "agreement": agree / len(examples)}


def dev_scores(task: Task, settings: ModelSettings, tokenizer: FullTokenizer, backend, examples) -> dict:
    predictor = Predictor(task, settings, tokenizer, backend)
    results = [result for _, result in predictor.predict_examples(examples)]
    return {k: float(v) for k, v in task.score(results, examples, settings, task.default_method).items()}


def read_dev(task: Task, settings: ModelSettings, tokenizer: FullTokenizer, dev: str | Path) -> list:
    """The dev file's examples, read in the model's own format and input columns (its settings keep them),
    and checked to carry labels — before anything is exported."""
    examples = task.read(str(dev), settings.task)
    if not examples:
        raise BertforgeError(f"{dev}: no examples")
    features = task.featurize(examples[:DEV_SAMPLE], tokenizer, settings, settings.max_seq_length)
    if not set(features.inputs) - set(MODEL_INPUTS):  # no targets beside the model's inputs
        raise BertforgeError(f"{dev}: no labels; --dev needs a labelled file to score both models on")
    return examples


def verify(
    task: Task,
    settings: ModelSettings,
    tokenizer: FullTokenizer,
    reference,
    candidates: dict[str, Any],
    dev: str | Path | None = None,
    dev_examples: list | None = None,
) -> dict[str, Any]:
    """The report's comparison of each candidate backend ("fp32", "portable", "int8") with the PyTorch
    `reference`, and with `dev` their task metric (on `dev_examples`, read by `read_dev` unless given). Raises
    when a full-precision one is off; logs each line of the comparison."""
    examples = [task.example(raw, str(i)) for i, raw in enumerate(sample_inputs(task))]
    metric = task.methods[task.default_method]
    if dev is not None:
        dev_examples = dev_examples if dev_examples is not None else read_dev(task, settings, tokenizer, dev)
        examples = dev_examples[:DEV_SAMPLE]  # real inputs (labelled ones featurize apart from unlabelled)
        torch_scores = dev_scores(task, settings, tokenizer, reference, dev_examples)
    report: dict[str, Any] = {"metric": metric} if dev is not None else {}
    for name, backend in candidates.items():
        result = compare(task, settings, tokenizer, reference, backend, examples)
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in result["max_abs_diff"].items())
        log.info(f"{name}: max |Δ| vs PyTorch {diffs}; same predictions {result['agreement']:.1%} of {len(examples)}")
        if dev_examples is not None:
            scores = dev_scores(task, settings, tokenizer, backend, dev_examples)
            delta = (scores[metric] - torch_scores[metric]) * task.metric_points
            result["dev"] = {"file": str(dev), "torch": torch_scores, "onnx": scores, "delta_points": delta}
            ref = torch_scores[metric]
            log.info(f"{name}: dev {metric} {scores[metric]:.4f} (PyTorch {ref:.4f}, {delta:+.2f} points)")
        report[name] = result
        if name in FULL_PRECISION:
            worst = max(result["max_abs_diff"].values())
            if worst > FP32_TOLERANCE:
                raise BertforgeError(f"the {name} ONNX model differs from PyTorch by {worst:.2e} (> {FP32_TOLERANCE})")
            if dev_examples is not None and abs(result["dev"]["delta_points"]) > FP32_METRIC_POINTS:
                raise BertforgeError(
                    f"the exported {name} model's dev {metric} differs from PyTorch's by "
                    f"{result['dev']['delta_points']:+.2f} points (> {FP32_METRIC_POINTS})"
                )
        elif dev_examples is not None and abs(result["dev"]["delta_points"]) > QUANTIZED_METRIC_POINTS:
            log.warning(
                f"{name}: dev {metric} {result['dev']['delta_points']:+.2f} points from PyTorch's "
                f"(more than {QUANTIZED_METRIC_POINTS}); consider the fp32 export"
            )
    return report
