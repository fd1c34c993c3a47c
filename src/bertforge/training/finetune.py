"""`bertforge finetune`: fine-tuning on the shared training loop, task by task.

A `Task` supplies what differs between tasks: how to read its files, how to turn examples into model inputs,
its head, its loss sums (an `Objective` of the loop), its metric and its prediction files. This module does
the rest: tokenizer and label list, dynamic padding with length-grouped training batches and sorted
evaluation batches, evaluation at every epoch with the best model kept, `eval_results.json`, predictions,
and several seeds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bertforge.errors import BertforgeError
from bertforge.fileio import atomic_dir, atomic_write_text
from bertforge.modeling.heads import BertForSequenceClassification
from bertforge.samples import cache_dir
from bertforge.tasks import classification
from bertforge.tasks.metrics import METHODS, compute_metrics, format_metrics
from bertforge.tokenization import FullTokenizer
from bertforge.training import distributed, loop
from bertforge.training.config import LossScaleConfig, OptimizerConfig, TrainConfig

Batch = dict[str, torch.Tensor]


@dataclass
class TaskConfig:
    name: str = "classification"
    format: str = "auto"  # clue/glue task name (tnews, afqmc, sst2, mnli, ...), csv, tsv, jsonl, auto
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    labels: str | None = None  # label list file (CLUE labels.json or one label per line)
    text_a: str | None = None  # column names for generic files
    text_b: str | None = None
    label: str | None = None
    regression: bool = False
    max_seq_length: int = 128
    assessment_method: str = "accuracy"  # accuracy | f1 | mcc | spearman_correlation
    skip_bad_lines: bool = False
    do_lower_case: bool = True
    vocab: str | None = None  # default: vocab.txt beside the initial checkpoint
    eval_batch_size: int = 64
    pad_to_max_length: bool = False  # pad every batch to max_seq_length (static shapes) instead of its longest


@dataclass
class FinetuneConfig:
    init: str | None = None  # the checkpoint to start from (anything from_pretrained reads)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, batch_size=32, save_checkpoint_steps=1_000_000, log_steps=20)
    )
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(
            name="adamw", learning_rate=2e-5, warmup_steps=0, warmup_proportion=0.1, weight_decay=0.01
        )
    )
    loss_scale: LossScaleConfig = field(default_factory=LossScaleConfig)
    seeds: list[int] = field(default_factory=list)  # several runs, mean ± std; empty: train.seed only
    do_train: bool = True
    do_eval: bool = True
    do_predict: bool = False


# ------------------------------------------------------------------------------------------ data
class EncodedSet:
    """Tokenized examples as a map-style dataset of dicts of int64 arrays (ragged; padded by `collate`)."""

    def __init__(self, features: classification.Features):
        self.features = features
        self.lengths = np.asarray(features.lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        f = self.features
        item = {"input_ids": np.asarray(f.input_ids[i]), "token_type_ids": np.asarray(f.token_type_ids[i])}
        if f.labels is not None:
            item["labels"] = np.asarray(f.labels[i])
        return item


def collate(items: list[dict[str, np.ndarray]], pad_to: int | None = None) -> Batch:
    """Pad to the longest sequence of the batch (dynamic padding), or to `pad_to`."""
    width = pad_to or max(len(it["input_ids"]) for it in items)
    ids = torch.zeros(len(items), width, dtype=torch.long)
    types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        ids[row, :n] = torch.from_numpy(it["input_ids"])
        types[row, :n] = torch.from_numpy(it["token_type_ids"])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    if "labels" in items[0]:
        batch["labels"] = torch.from_numpy(np.stack([it["labels"] for it in items]))
    return batch


def encode_cached(examples, path: Path, tokenizer: FullTokenizer, tc: TaskConfig, label_map) -> classification.Features:
    """`featurize`, cached by file content + vocab + settings + labels (re-runs and seeds skip tokenizing)."""
    key = hashlib.sha256()
    for part in (
        path.read_bytes(),
        Path(tokenizer.vocab_file).read_bytes(),
        json.dumps(
            [
                tc.format,
                tc.max_seq_length,
                tc.do_lower_case,
                tc.text_a,
                tc.text_b,
                tc.label,
                tc.regression,
                label_map.labels if label_map else None,
            ]
        ).encode(),
    ):
        key.update(hashlib.sha256(part).digest())
    cached = cache_dir() / "features" / f"{key.hexdigest()}.json"
    if cached.is_file():
        return classification.Features(**json.loads(cached.read_text()))
    features = classification.featurize(examples, tokenizer, tc.max_seq_length, label_map)
    atomic_write_text(cached, json.dumps(features.__dict__))
    return features


# ----------------------------------------------------------------------------------------- task
def _sums(regression: bool) -> Callable[[Any, Batch], torch.Tensor]:
    def sums(model, mb: Batch) -> torch.Tensor:
        logits = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"]).logits.float()
        labels = mb["labels"]
        if regression:
            loss = F.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum")
            correct = torch.zeros((), device=logits.device)
        else:
            loss = F.cross_entropy(logits, labels.long(), reduction="sum")
            correct = (logits.argmax(-1) == labels).float().sum()
        return torch.stack([loss, torch.tensor(float(len(labels)), device=logits.device), correct])

    return sums


def classification_objective(regression: bool) -> loop.Objective:
    return loop.Objective(
        totals=lambda micro: torch.tensor([float(sum(len(mb["labels"]) for mb in micro))]),
        sums=_sums(regression),
        loss=lambda s, totals: s[0] / totals[0],
        summary=lambda s: {"loss": (s[0] / s[1]).item()} | ({} if regression else {"accuracy": (s[2] / s[1]).item()}),
        tokens=lambda mb: int(mb["attention_mask"].sum()),
    )


@torch.no_grad()
def predict(model, dataset: EncodedSet, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits (N, num_labels) in input order, computed in batches of similar length (little padding)."""
    model.eval()
    order = np.argsort(-dataset.lengths, kind="stable")
    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        mb = {k: v.to(device) for k, v in collate([dataset[i] for i in idx]).items()}
        out[idx] = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"]).logits.float().cpu().numpy()
    return out


def _read(path: str | None, what: str, tc: TaskConfig):
    if path is None:
        raise BertforgeError(f"no {what} file: pass --{what}")
    examples, report = classification.read_examples(
        path,
        tc.format,
        text_a=tc.text_a,
        text_b=tc.text_b,
        label=tc.label,
        regression=tc.regression,
        skip_bad_lines=tc.skip_bad_lines,
    )
    if report.skipped or report.unlabelled:
        print(report.summary())
    return examples


def _label_map(config: FinetuneConfig, train_examples, init: Path | None):
    tc = config.task
    if tc.regression or classification.is_regression(classification.task_name(tc.format)):
        return None
    saved = init / "labels.json" if init is not None and init.is_dir() else None
    if tc.labels:
        return classification.LabelMap.load(tc.labels)
    if saved is not None and saved.is_file() and not config.do_train:
        return classification.LabelMap.load(saved)  # evaluating/predicting with a fine-tuned model
    fixed = classification.LabelMap.for_task(classification.task_name(tc.format))
    return fixed or classification.LabelMap.from_examples(train_examples, origin=str(tc.train))


# ----------------------------------------------------------------------------------------- recipe
def finetune(config: FinetuneConfig, output: str | Path, progress: bool = True) -> dict[str, Any]:
    """Fine-tune (one seed or several) and return the dev metrics (with mean/std over seeds)."""
    output = Path(output)
    seeds = config.seeds or [config.train.seed]
    if len(seeds) == 1:
        return _finetune_one(config, output, seeds[0], progress)
    results = [_finetune_one(config, output / f"seed-{s}", s, progress) for s in seeds]
    keys = [k for k, v in results[0].items() if isinstance(v, float)]
    summary = {
        k: {
            "mean": statistics.mean(r[k] for r in results),
            "std": statistics.stdev(r[k] for r in results),
            "values": [r[k] for r in results],
        }
        for k in keys
    }
    atomic_write_text(output / "eval_results.json", json.dumps({"seeds": seeds, **summary}, indent=2) + "\n")
    for k in keys:
        print(f"{k}: {summary[k]['mean']:.4f} ± {summary[k]['std']:.4f} over seeds {seeds}")
    return summary


def _finetune_one(config: FinetuneConfig, output: Path, seed: int, progress: bool) -> dict[str, Any]:
    tc, task = config.train, config.task
    dist = distributed.setup(tc.device)
    if output.exists() and any(output.iterdir()) and config.do_train:
        raise BertforgeError(f"{output} is not empty; choose a new --output (nothing is overwritten)")
    init = Path(config.init) if config.init else None
    if init is None:
        raise BertforgeError("no initial checkpoint: pass --init (a pretrained or fine-tuned model)")
    vocab = Path(task.vocab) if task.vocab else (init if init.is_dir() else init.parent) / "vocab.txt"
    if not vocab.is_file():
        raise BertforgeError(f"no vocab: {vocab} does not exist; pass --task.vocab VOCAB")
    tokenizer = FullTokenizer(vocab, do_lower_case=task.do_lower_case)
    train_examples = _read(task.train, "train", task) if config.do_train else []
    label_map = _label_map(config, train_examples, init)
    num_labels = 1 if label_map is None else label_map.num_labels
    id2label = None if label_map is None else dict(enumerate(label_map.labels))
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(init, num_labels=num_labels, id2label=id2label)
    model.to(dist.device)
    output.mkdir(parents=True, exist_ok=True)
    dev_examples = _read(task.dev, "dev", task) if (config.do_eval or config.do_train) and task.dev else None
    dev = EncodedSet(encode_cached(dev_examples, Path(task.dev), tokenizer, task, label_map)) if dev_examples else None
    best_dir, best = output / "best", {"score": -float("inf")}
    main_metric = METHODS[task.assessment_method]

    def evaluate(step: int) -> dict[str, float]:
        if dev is None:
            return {}
        metrics = compute_metrics(
            task.assessment_method,
            predict(model, dev, task.eval_batch_size, dist.device),
            np.asarray(dev.features.labels),
        )
        if dist.is_main and metrics[main_metric] > best["score"]:
            best.update(score=metrics[main_metric], step=step, metrics=metrics)
            _save_model(model, best_dir, label_map, vocab)
        return {k: float(v) for k, v in metrics.items()}

    if config.do_train:
        train = EncodedSet(encode_cached(train_examples, Path(task.train), tokenizer, task, label_map))
        if train.features.num_truncated and dist.is_main:
            print(
                f"{task.train}: {train.features.num_truncated} of {len(train)} examples truncated to "
                f"{task.max_seq_length} tokens"
            )
        seeded = TrainConfig(**{**tc.__dict__, "seed": seed})
        pad_to = task.max_seq_length if task.pad_to_max_length else None
        job = loop.Job(
            model,
            train,
            functools.partial(collate, pad_to=pad_to),
            classification_objective(label_map is None),
            name="finetune",
            lengths=None if pad_to else train.lengths,  # length grouping only helps dynamic padding
            evaluate=evaluate,
        )
        loop.run(job, seeded, config.optimizer, config.loss_scale, output, dist, progress=progress)
        if dev is None and dist.is_main:  # nothing to choose by: the last model is the one kept
            _save_model(model, best_dir, label_map, vocab)
        model = BertForSequenceClassification.from_pretrained(best_dir).to(dist.device)
    results: dict[str, Any] = {}
    if config.do_eval and dev is not None:
        results = evaluate(best.get("step", 0)) if not config.do_train else dict(best["metrics"])
        results = {k: float(v) for k, v in results.items()} | {"best_step": best.get("step", 0)}
        if dist.is_main:
            atomic_write_text(output / "eval_results.json", json.dumps(results, indent=2) + "\n")
            print(format_metrics({k: v for k, v in results.items() if k != "best_step"}))
    if config.do_predict and dist.is_main:
        _write_predictions(model, task, tokenizer, label_map, output, dist.device)
    distributed.teardown()
    return results


def _save_model(model, directory: Path, label_map, vocab: Path) -> None:
    """The kept model: weights + config (with label names), its label list and vocab, loadable by --init;
    replaced as a whole, so a kill while saving leaves the previous best."""
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp)
        if label_map is not None:
            label_map.save(tmp / "labels.json")
        shutil.copyfile(vocab, tmp / "vocab.txt")


def _write_predictions(model, task: TaskConfig, tokenizer, label_map, output: Path, device) -> list[Path]:
    path = task.test or task.dev
    examples = _read(path, "test", task)
    data = EncodedSet(
        classification.featurize(
            [classification.Example(e.text_a, e.text_b, None, e.guid, e.source) for e in examples],
            tokenizer,
            task.max_seq_length,
            None,
        )
    )
    logits = predict(model, data, task.eval_batch_size, device)
    written = [output / "predictions.jsonl"]
    if label_map is None:
        classification.write_predictions(written[0], examples, logits[:, 0], None)
        return written
    probabilities = torch.softmax(torch.from_numpy(logits), -1).numpy()
    classification.write_predictions(written[0], examples, probabilities, label_map)
    name = classification.task_name(task.format)
    predicted = [label_map.decode(int(i)) for i in probabilities.argmax(-1)]
    kind = classification.FORMATS[name].kind if name in classification.FORMATS else None
    if kind == "jsonl":  # a CLUE task: CLUE's submission file
        written.append(output / f"{name}_predict.json")
        classification.write_clue_submission(written[-1], examples, predicted, name, label_map)
    elif kind == "tsv":  # a GLUE task: GLUE's submission file
        written.append(output / f"{name}.tsv")
        classification.write_glue_predictions(written[-1], examples, predicted)
    print(f"predictions: {', '.join(map(str, written))}")
    return written
