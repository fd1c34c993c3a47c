"""`Predictor`: raw inputs → a task's results, for any fine-tuned model folder, on any backend.

Inputs are featurized by the model's own task with the model's own tokenizer settings, run in batches of
similar length (sorted, dynamically padded, input order restored), and post-processed into the shapes users
know from Hugging Face pipelines and TEI. Streams: inputs are taken a chunk at a time, so memory does not
grow with their number. Fine-tuning's evaluation runs through `run_features` too, so evaluation and
prediction cannot disagree.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.inference.backends import BACKENDS, INPUT_NAMES
from bertforge.model_folder import ModelSettings, check_fits, check_labels, check_vocab, find_vocab, load_settings
from bertforge.modeling.config import BertConfig
from bertforge.tasks import get_task, kinds_by_head
from bertforge.tasks.settings import INFERENCE, build
from bertforge.tasks.task import Features, Outputs, Task, collate
from bertforge.tokenization import FullTokenizer

log = logging.getLogger("bertforge")

# Batch widths above 64 are rounded up to a multiple of this: few distinct shapes, so the runtime's per-shape
# caches (oneDNN primitives) stay small however many inputs stream through (benchmarks/bench_qa.py); short
# batches, where rounding would cost more than it saves, keep their exact width.
PAD_MULTIPLE = 8


def padded_width(longest: int) -> int:
    """The width of a batch whose longest feature has `longest` tokens: its own up to 64, above that rounded up
    to a multiple of `PAD_MULTIPLE`."""
    return longest if longest <= 64 else -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def run_features(
    backend, features: Features, batch_size: int, token_outputs: Sequence[str] = (), pad_to: int | None = None
) -> list[Outputs]:
    """The backend's outputs for each feature, in feature order. Batches hold features of similar length
    (longest first), padded to their longest (above 64 rounded up to a multiple of `PAD_MULTIPLE`) or `pad_to`;
    per-token outputs are cut to each length."""
    order = np.argsort(-features.lengths, kind="stable")
    results: list[Outputs] = [{}] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        items = [features.model_inputs(i) for i in idx]
        longest = int(features.lengths[idx].max())
        width = pad_to or padded_width(longest)
        batch = {k: v.numpy() for k, v in collate(items, width).items() if k in INPUT_NAMES}
        out = backend(batch)
        for row, i in enumerate(idx):
            n = features.lengths[i]
            results[i] = {k: v[row, :n] if k in token_outputs else v[row] for k, v in out.items()}
    return results


def with_options(settings: ModelSettings, options: dict[str, Any], max_seq_length: int) -> ModelSettings:
    """The model's settings with `options` (raw `--task.KEY` values) over its task settings: only those a
    prediction may change, each checked, and the rules across them checked for `max_seq_length` (a shorter
    window than the model's may not fit its stride)."""
    task = build(type(settings.task), options, "command line", scopes={INFERENCE}, base=settings.task)
    unset = [key for key, value in options.items() if value is None]  # null: "as trained", which is no override
    if unset:
        raise BertforgeError(f"command line: task.{unset[0]} needs a value (got null)")
    try:
        task.check(max_seq_length, settings.labels)
    except BertforgeError as exc:
        raise BertforgeError(f"command line: {exc}") from None
    return dataclasses.replace(settings, task=task)


class Predictor:
    """A fine-tuned model ready to predict: `Predictor.from_pretrained(folder).predict(["text", ...])`."""

    def __init__(
        self,
        task: Task,
        settings: ModelSettings,
        tokenizer: FullTokenizer,
        backend,
        *,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        chunk_size: int = 4096,
        pad_to_max_length: bool = False,
    ):
        if batch_size < 1:
            raise BertforgeError(f"batch size must be at least 1, not {batch_size}")
        self.task, self.settings, self.tokenizer, self.backend = task, settings, tokenizer, backend
        self.batch_size, self.chunk_size = batch_size, max(chunk_size, batch_size)
        self.max_seq_length = max_seq_length or settings.max_seq_length
        self.pad_to = self.max_seq_length if pad_to_max_length else None  # static shapes (some runtimes want them)
        self.examples = 0  # inputs predicted so far
        self.truncated = 0  # of which cut to max_seq_length

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        backend: str = "torch",
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        pad_to_max_length: bool = False,
        task_options: dict[str, Any] | None = None,
    ) -> Predictor:
        """Load a model folder (bertforge's, with bertforge.json, or one written by `transformers`).
        `task_options` change the model's task settings for this predictor (e.g. QA's `null_threshold`)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise BertforgeError(f"{folder}: no such model folder")
        settings = load_settings(folder, kinds_by_head())
        if settings.kind is None:
            raise BertforgeError(
                f"{folder}: a model without a task head (no task kind in its settings); fine-tune it first "
                "(bertforge finetune KIND --init ...)"
            )
        task = get_task(settings.kind, str(folder))
        settings = with_options(settings, task_options or {}, max_seq_length or settings.max_seq_length)
        vocab = find_vocab(folder)
        tokenizer = FullTokenizer(vocab, do_lower_case=settings.do_lower_case)
        config = BertConfig.from_file(folder / "config.json")
        check_vocab(folder, settings, vocab)
        check_fits(config, folder, vocab, len(tokenizer), max_seq_length)
        check_labels(folder, settings, config.id2label)
        if backend not in BACKENDS:
            raise BertforgeError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        runner = BACKENDS[backend](folder, task.head, device=device, threads=threads)
        return cls(
            task,
            settings,
            tokenizer,
            runner,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            pad_to_max_length=pad_to_max_length,
        )

    def predict(self, inputs: Any) -> Any:
        """One input (a text, a (text, text_b) pair, a record) -> its result; a list of inputs -> a list."""
        single = isinstance(inputs, (str, dict)) or (
            isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(t, str) for t in inputs)
        )
        batch = [inputs] if single else list(inputs)
        examples = [self.example(raw, str(i)) for i, raw in enumerate(batch)]
        results = [self.task.present(result) for _, result in self.predict_examples(examples)]
        return results[0] if single else results

    def example(self, raw: Any, index: str, where: str | None = None):
        """The task's example for one raw input; an error names `where` (default: "input INDEX")."""
        try:
            return self.task.example(raw, index)
        except BertforgeError as exc:
            raise BertforgeError(f"{where or f'input {index}'}: {exc}") from None

    def predict_examples(self, examples: Iterable) -> Iterator[tuple[Any, Any]]:
        """(example, result) pairs in input order, a chunk of inputs at a time."""
        examples = iter(examples)
        while chunk := list(itertools.islice(examples, self.chunk_size)):
            features = self.featurize(chunk)
            yield from zip(chunk, self.postprocess(chunk, features, self.run(features)))

    # The three steps of `predict_examples`, public so that a caller that batches features of many requests
    # together (`bertforge.serve`) predicts exactly as `predict` does.
    def featurize(self, examples: Sequence) -> Features:
        """The model inputs of `examples` (windows, truncation), counted in `examples` and `truncated`."""
        features = self.task.featurize(examples, self.tokenizer, self.settings, self.max_seq_length)
        self.examples += len(examples)
        self.truncated += features.num_truncated
        return features

    def run(self, features: Features, batch_size: int | None = None) -> list[Outputs]:
        """The backend's outputs for each feature, in batches of `batch_size` (default: the predictor's)."""
        return run_features(self.backend, features, batch_size or self.batch_size, self.task.token_outputs, self.pad_to)

    def postprocess(self, examples: Sequence, features: Features, outputs: list[Outputs]) -> list:
        """The task's results of `examples` from their features' outputs."""
        return self.task.postprocess(examples, features, outputs, self.settings)
