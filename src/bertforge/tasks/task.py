"""The task interface: what one task family contributes to fine-tuning and to inference.

Data flows one way: a file → the task's `read` → examples → `featurize` → `Features` (one example may
give several, e.g. windows) → the training loop (with `loss_count` normalising the head's loss sums) or a
`bertforge.inference` backend → the task's `postprocess` (features' outputs → one result per example) →
`score` (dev metrics) or `record` (a JSON lines row) and `submissions` (a benchmark's own files).
Everything else — tokenizer, padding, batching, the loop, the kept model folder, `predict` — is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.model_folder import ModelSettings
from bertforge.modeling.heads import IGNORE_INDEX
from bertforge.tasks.requests import Serving
from bertforge.tasks.settings import MODEL, setting
from bertforge.tokenization import FullTokenizer

Batch = dict[str, torch.Tensor]


@dataclass
class TaskConfig:
    """Settings every task has: the `task:` section of a fine-tuning config, and (those kept) the `task` part
    of a model folder's bertforge.json. A task's settings extend it; `bertforge.tasks.settings` says how."""

    format: str = setting("auto", scope=MODEL)  # which public format the files are in (a benchmark name, csv, ...)
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    labels: str | None = None  # label list file
    # The model's own, kept once beside the task settings in bertforge.json (as are casing and the vocab).
    max_seq_length: int = setting(128, low=3)  # room for [CLS], one token and [SEP]
    assessment_method: str = ""  # the metric that picks the best model; "" = the task's default
    skip_bad_lines: bool = False
    do_lower_case: bool | None = None  # None: what the initial model folder says, else true
    vocab: str | None = None  # default: vocab.txt beside the initial checkpoint
    eval_batch_size: int = setting(64, low=1)
    pad_to_max_length: bool = False  # pad every batch to max_seq_length (static shapes) instead of its longest

    def check(self, max_seq_length: int, labels: list[str] | None = None) -> None:
        """Rules across settings, given the model's length and labels (a window wider than its stride, ...);
        a task's settings add theirs. Raises naming the keys."""


# The model's inputs, in the order its forward pass takes them; a task's features hold the first two, and the
# attention mask too where padding inside a feature must be masked (multiple choice's shorter choices).
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass
class Features:
    """Unpadded model inputs, one row per feature, and the feature → example map.

    `inputs` holds `input_ids`, `token_type_ids` (per feature a list of token ids, or for multiple choice a
    rectangular (choices, tokens) list with its `attention_mask`) and, for labelled data, the head's targets
    under the names of its `forward` arguments (per-token lists are padded by `collate`, scalars stacked).
    `meta` holds what post-processing needs and the model does not (e.g. character offsets)."""

    inputs: dict[str, list]
    example_index: list[int]
    num_truncated: int = 0  # examples cut to max_seq_length
    meta: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lengths = np.fromiter((_tokens(ids) for ids in self.inputs["input_ids"]), dtype=np.int64)

    def model_inputs(self, i: int) -> dict[str, np.ndarray]:
        """Feature `i`'s model inputs (no targets), as `collate` takes them."""
        return {k: np.asarray(self.inputs[k][i]) for k in MODEL_INPUTS if k in self.inputs}

    def __len__(self) -> int:
        return len(self.example_index)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("inputs", "example_index", "num_truncated", "meta")}

    @classmethod
    def from_json(cls, data: Any) -> Features:
        """`to_json`'s output back, or ValueError when it is not that shape (a damaged cache entry)."""
        if not isinstance(data, dict) or set(data) != {"inputs", "example_index", "num_truncated", "meta"}:
            raise ValueError("expected an object with inputs, example_index, num_truncated and meta")
        inputs, rows, meta = data["inputs"], data["example_index"], data["meta"]
        if not isinstance(inputs, dict) or "input_ids" not in inputs or not isinstance(meta, dict):
            raise ValueError("expected inputs (with input_ids) and meta as objects")
        if not isinstance(rows, list) or not isinstance(data["num_truncated"], int):
            raise ValueError("expected example_index as a list and num_truncated as an integer")
        for name, column in [*inputs.items(), *meta.items()]:
            if not isinstance(column, list) or len(column) != len(rows):
                raise ValueError(f"{name}: expected a list of {len(rows)} rows")
        return cls(**data)


class FeatureDataset:
    """`Features` as a map-style dataset of dicts of arrays (ragged; padded by `collate`)."""

    def __init__(self, features: Features):
        self.features = features
        self.lengths = features.lengths

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[i]) for k, v in self.features.inputs.items()}


def _tokens(ids: list) -> int:
    """A feature's length in tokens: its last axis (a list of token ids, or rows of them)."""
    return len(ids[0]) if ids and isinstance(ids[0], (list, np.ndarray)) else len(ids)


PAD_VALUES = {"labels": IGNORE_INDEX}  # per-token targets are padded with "no loss"; inputs with 0


def collate(items: list[dict[str, np.ndarray]], pad_to: int | None = None) -> Batch:
    """Pad arrays to the largest of the batch along every axis — the tokens to the longest sequence (dynamic
    padding) or to `pad_to`, multiple choice's choices to the most a question has; stack scalars. Adds the
    attention mask (1 at every real token) unless the features carry theirs."""
    width = pad_to or max(it["input_ids"].shape[-1] for it in items)
    batch = {}
    for key, first in items[0].items():
        if first.ndim == 0:
            batch[key] = torch.from_numpy(np.stack([it[key] for it in items]))
            continue
        shape = (len(items), *np.max([it[key].shape[:-1] for it in items], axis=0).astype(int), width)
        out = np.full(shape, PAD_VALUES.get(key, 0), dtype=np.int64 if first.dtype.kind in "iu" else first.dtype)
        for row, it in enumerate(items):
            out[(row, *(slice(0, n) for n in it[key].shape))] = it[key]
        batch[key] = torch.from_numpy(out)
    if "attention_mask" not in batch:
        mask = np.zeros(batch["input_ids"].shape, dtype=np.int64)
        for row, it in enumerate(items):
            mask[row, ..., : it["input_ids"].shape[-1]] = 1
        batch["attention_mask"] = torch.from_numpy(mask)
    return batch


Outputs = dict[str, np.ndarray]  # one feature's head outputs by name (per-token ones cut to its length)


@dataclass(frozen=True)
class Task:
    """One task family. Every callable is a plain function of the task's own module."""

    kind: str  # `bertforge finetune <kind>`, and the kind recorded in a model folder
    config: type[TaskConfig]
    head: type  # the model class (a `bertforge.modeling.heads` head)
    default_method: str  # assessment method when the config names none
    methods: dict[str, str]  # assessment method -> the metric it maximises
    # A file -> examples; every problem names file and line (or is skipped and counted when asked).
    read: Callable[[str, TaskConfig], list]
    # The task's part of the model settings (labels, ...) from the config, the training examples and the
    # initial model's settings (None unless it is a fine-tuned model of this task).
    prepare: Callable[[TaskConfig, list, ModelSettings | None], ModelSettings]
    # BertConfig fields of the head for these settings (num_labels, id2label, ...).
    model_overrides: Callable[[ModelSettings], dict[str, Any]]
    # One raw input (a text, a (text, text_b) pair, or a record with named fields) -> an unlabelled example.
    example: Callable[[Any, str], Any]
    featurize: Callable[[Sequence, FullTokenizer, ModelSettings, int], Features]
    loss_count: Callable[[Batch], torch.Tensor]  # what the head's `loss_sum` is a sum over, in a batch
    postprocess: Callable[[Sequence, Features, list[Outputs], ModelSettings], list]  # one result per example
    score: Callable[[list, Sequence, ModelSettings, str], dict[str, float]]  # (results, gold, method) -> metrics
    record: Callable[[Any], dict[str, Any]]  # a result as a flat JSON lines record
    # Extra prediction files in a benchmark's own submission format; returns the paths written.
    submissions: Callable[[Path, Sequence, list, ModelSettings, TaskConfig], list[Path]] = lambda *args: []
    token_outputs: tuple[str, ...] = ()  # outputs with one row per token, cut to each feature's length
    # A result as users get it from `Predictor.predict` (results may carry more, e.g. tags for scoring).
    present: Callable[[Any], Any] = lambda result: result
    # Settings refreshed from a live model before post-processing or saving (e.g. CRF transitions, which
    # prediction needs beside the emissions).
    sync: Callable[[Any, ModelSettings], ModelSettings] = lambda model, settings: settings
    # Parameter-name prefix -> multiple of the learning rate (e.g. a CRF head that should learn faster).
    lr_multipliers: Callable[[TaskConfig], dict[str, float]] = lambda tc: {}
    # Settings learned from the dev scores, kept with the best model (e.g. QA's no-answer threshold).
    tune: Callable[[ModelSettings, dict[str, float]], ModelSettings] = lambda settings, metrics: settings
    # The fields a raw input record must have (JSON lines, CSV/TSV columns) for `predict`.
    fields: tuple[str, ...] = ("text",)
    # Raw inputs made of these sentences (for export's comparison of runtimes); None: records of `fields`.
    samples: Callable[[Sequence[str]], list] | None = None
    # Its HTTP contract for `bertforge serve` (request and response shapes, /info, the demo page's form); None: a
    # task that is not served.
    serving: Serving | None = None
    # Names of the input axes (every input has them): export makes each dynamic.
    input_axes: tuple[str, ...] = ("batch", "sequence")
    # Points per unit of the task's metrics (100 for fractions; 1 where the official scores are percentages).
    metric_points: float = 100.0
    # The task's fine-tuning recipe where it differs from `FinetuneConfig`'s: {"train": {...}, "optimizer": {...}}.
    # It is the default of `bertforge finetune KIND`; the shipped configs/finetune/KIND.yaml must agree (tested).
    recipe: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Labels and settings of a model folder written by `transformers` (no bertforge.json), from its config
    # and the task's default settings.
    from_transformers: Callable[[Any, TaskConfig], tuple[list[str] | None, TaskConfig]] = lambda config, defaults: (
        labels_of(config),
        defaults,
    )

    def infer(self, config) -> tuple[list[str] | None, TaskConfig]:
        """Labels and settings of a transformers folder whose head is this task's (`config`: its BertConfig)."""
        return self.from_transformers(config, self.config())


def labels_of(config) -> list[str] | None:
    """A transformers config's `id2label` in id order, or None."""
    return [config.id2label[i] for i in range(len(config.id2label))] if config.id2label else None
