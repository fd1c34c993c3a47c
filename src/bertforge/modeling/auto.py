"""Pick the model class a checkpoint was saved from, for tools (convert, inspect) that take any checkpoint."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from bertforge.modeling.bert import BertModel
from bertforge.modeling.checkpoint import PretrainedMixin, locate, read_weights, safetensors_names
from bertforge.modeling.config import BertConfig
from bertforge.modeling.heads import (
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)

MODEL_CLASSES: dict[str, type[PretrainedMixin]] = {
    "encoder": BertModel,
    "pretraining": BertForPreTraining,
    "sequence-classification": BertForSequenceClassification,
    "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
    "multiple-choice": BertForMultipleChoice,
}


def detect_head(names: Collection[str], config: BertConfig | None = None) -> str:
    """The head whose weights a checkpoint holds ('encoder' when it holds none), from its tensor names: as
    stored, or as `read_weights` returns them (the head prefixes are the same)."""
    if any(n.startswith("cls.") for n in names):
        return "pretraining"
    if any(n.startswith("qa_outputs.") for n in names):
        return "question-answering"
    if any(n.startswith(("crf.", "lstm.")) for n in names):
        return "token-classification"
    if any(n.startswith("classifier.") for n in names):
        architectures = (config.extra.get("architectures") if config else None) or []
        if "BertForMultipleChoice" in architectures:
            return "multiple-choice"
        return "token-classification" if "BertForTokenClassification" in architectures else "sequence-classification"
    return "encoder"


def load_model(path: str | Path, config: BertConfig | str | Path | None = None, head: str = "auto") -> PretrainedMixin:
    """Load any checkpoint into the class matching its head (or the one named by `head`), reading its
    weights once."""
    state = None
    if head == "auto":
        weights, found = locate(path)
        cfg = BertConfig.resolve(config) if config is not None else (BertConfig.from_file(found) if found else None)
        if weights.suffix == ".safetensors":  # the names are in the header: no tensor is read here
            names = safetensors_names(weights)
        else:
            state = read_weights(weights)
            names = state.keys()
        head = detect_head(names, cfg)
    return MODEL_CLASSES[head].from_pretrained(path, config=config, state=state)
