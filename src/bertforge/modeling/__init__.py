"""BERT/NEZHA models: config, encoder, heads, CRF and checkpoint loading/saving."""

from bertforge.modeling.auto import load_model
from bertforge.modeling.bert import BertModel, BertOutput
from bertforge.modeling.config import PRESETS, BertConfig
from bertforge.modeling.crf import CRF
from bertforge.modeling.heads import (
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    ClassifierOutput,
    PreTrainingOutput,
    SpanOutput,
)

__all__ = [
    "PRESETS",
    "CRF",
    "BertConfig",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertOutput",
    "ClassifierOutput",
    "PreTrainingOutput",
    "SpanOutput",
    "load_model",
]
