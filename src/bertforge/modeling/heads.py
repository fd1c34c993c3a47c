"""Task heads on the encoder: pretraining (MLM + NSP), sequence classification/regression, token
classification (softmax, CRF, optional BiLSTM), span extraction and multiple choice. Names follow Hugging Face's heads.

Given targets, every head returns its loss as named *sums* (`terms`: e.g. `loss_sum` and the `count` it is
a sum over), computed once; `loss` is their ratio. A trainer adds the sums over micro-batches and processes
and normalises once over the whole step (`bertforge.training.loop`), so it never recomputes a loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.modeling.bert import BertModel, activation, init_weights
from bertforge.modeling.checkpoint import PretrainedMixin
from bertforge.modeling.config import BertConfig
from bertforge.modeling.crf import CRF
from bertforge.modeling.dropout import Dropout

IGNORE_INDEX = -100  # label value that contributes no loss

LossTerms = dict[str, torch.Tensor]  # named scalar sums over a (micro-)batch


def _ratio(terms: LossTerms, num: str = "loss_sum", den: str = "count") -> torch.Tensor:
    return terms[num] / terms[den].clamp(min=1)


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None  # mlm_loss + nsp_loss
    mlm_loss: torch.Tensor | None
    nsp_loss: torch.Tensor | None
    mlm_logits: torch.Tensor  # (B, P, V) at the masked positions (or (B, S, V) when no positions are given)
    nsp_logits: torch.Tensor  # (B, 2); class 1 = "B is a random sentence"
    terms: LossTerms | None = None  # `pretraining_loss_terms`, when targets were given


@dataclass
class ClassifierOutput:
    loss: torch.Tensor | None  # loss_sum / count
    logits: torch.Tensor  # (B, num_labels), or (B, S, num_labels) for token classification
    terms: LossTerms | None = None  # loss_sum, count (and correct, except for a CRF), when labels were given


@dataclass
class SpanOutput:
    loss: torch.Tensor | None  # loss_sum / count
    start_logits: torch.Tensor  # (B, S)
    end_logits: torch.Tensor  # (B, S)
    terms: LossTerms | None = None  # loss_sum (mean of start and end NLL, summed), count, when positions given


class _Head(PretrainedMixin, nn.Module):
    """An encoder (`self.bert`) plus head modules; initialises the head like the encoder."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=add_pooling_layer)

    def _init_head(self) -> None:
        for name, module in self.named_children():
            if name != "bert":
                module.apply(lambda m: init_weights(m, self.config))

    def _dropout(self) -> Dropout:
        p = self.config.classifier_dropout
        return Dropout(self.config.hidden_dropout_prob if p is None else p)


class BertPredictionTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden)))


class BertLMPredictionHead(nn.Module):
    """transform (dense, act, LayerNorm), then the decoder tied to the word embeddings, plus a bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """hidden (..., H), word_embeddings (V, H) -> logits (..., V)."""
        return F.linear(self.transform(hidden), word_embeddings, self.bias)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(_Head):
    """Masked LM + next-sentence prediction. The MLM head runs only at the masked positions."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.cls = BertPreTrainingHeads(config)
        self.bert.embeddings.sparse_word_gradient = True  # the tied MLM decoder densifies it
        self._init_head()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        masked_lm_positions: torch.Tensor | None = None,
        masked_lm_ids: torch.Tensor | None = None,
        masked_lm_weights: torch.Tensor | None = None,
        next_sentence_labels: torch.Tensor | None = None,
    ) -> PreTrainingOutput:
        """masked_lm_positions/ids/weights (B, P) as written by Google's create_pretraining_data (weight 0 =
        padding); next_sentence_labels (B,). Without positions, logits cover every position (B, S, V).

        loss = sum(w * NLL at masked positions) / sum(w) + mean NSP NLL.
        """
        out = self.bert(input_ids, token_type_ids, attention_mask)
        hidden = out.last_hidden_state  # (B, S, H)
        if masked_lm_positions is not None:
            index = masked_lm_positions.long()[..., None].expand(-1, -1, hidden.shape[-1])
            hidden = torch.gather(hidden, 1, index)  # (B, P, H)
        mlm_logits = self.cls.predictions(hidden, self.bert.embeddings.word_embeddings.weight)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)
        if masked_lm_ids is None and next_sentence_labels is None:
            return PreTrainingOutput(None, None, None, mlm_logits, nsp_logits)
        t = pretraining_loss_terms(mlm_logits, nsp_logits, masked_lm_ids, masked_lm_weights, next_sentence_labels)
        mlm_loss = _ratio(t, "mlm_nll", "mlm_weight") if masked_lm_ids is not None else None
        nsp_loss = _ratio(t, "nsp_nll", "nsp_count") if next_sentence_labels is not None else None
        loss = sum(x for x in (mlm_loss, nsp_loss) if x is not None)
        return PreTrainingOutput(loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits, t)


def pretraining_loss_terms(
    mlm_logits: torch.Tensor,
    nsp_logits: torch.Tensor,
    masked_lm_ids: torch.Tensor | None,
    masked_lm_weights: torch.Tensor | None,
    next_sentence_labels: torch.Tensor | None,
) -> LossTerms:
    """Sums over the batch of the MLM (B, P, V) and NSP (B, 2) logits; absent targets give zeros.

    mlm_nll: sum of weight * NLL over masked positions; mlm_weight: sum of weights (real predictions);
    mlm_correct: weighted count of correct predictions; nsp_nll, nsp_count, nsp_correct likewise."""
    zero = mlm_logits.new_zeros((), dtype=torch.float32)
    terms = dict.fromkeys(("mlm_nll", "mlm_weight", "mlm_correct", "nsp_nll", "nsp_count", "nsp_correct"), zero)
    if masked_lm_ids is not None:
        ids = masked_lm_ids.flatten().long()
        logits = mlm_logits.flatten(0, 1).float()
        weights = (ids != IGNORE_INDEX).float() if masked_lm_weights is None else masked_lm_weights.flatten().float()
        nll = F.cross_entropy(logits, ids, reduction="none", ignore_index=IGNORE_INDEX)
        correct = (logits.argmax(-1) == ids).float()
        terms |= {
            "mlm_nll": (nll * weights).sum(),
            "mlm_weight": weights.sum(),
            "mlm_correct": (correct * weights).sum(),
        }
    if next_sentence_labels is not None:
        labels = next_sentence_labels.flatten().long()
        terms |= {
            "nsp_nll": F.cross_entropy(nsp_logits.float(), labels, reduction="sum"),
            "nsp_count": zero + labels.numel(),
            "nsp_correct": (nsp_logits.argmax(-1) == labels).float().sum(),
        }
    return terms


def classification_terms(logits: torch.Tensor, labels: torch.Tensor) -> LossTerms:
    """Cross-entropy sums of logits (N, C) against class ids (N,); ids equal to IGNORE_INDEX count for nothing."""
    logits, labels = logits.float(), labels.long()
    kept = labels != IGNORE_INDEX
    return {
        "loss_sum": F.cross_entropy(logits, labels, reduction="sum", ignore_index=IGNORE_INDEX),
        "count": kept.sum().float(),
        "correct": ((logits.argmax(-1) == labels) & kept).sum().float(),
    }


class BertForSequenceClassification(_Head):
    """Pooled [CLS] -> dropout -> linear. num_labels == 1 is regression (MSE), else cross-entropy."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dropout = self._dropout()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._init_head()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """labels (B,): class ids, or float targets when regressing -> logits (B, num_labels)."""
        pooled = self.bert(input_ids, token_type_ids, attention_mask).pooler_output
        logits = self.classifier(self.dropout(pooled))
        if labels is None:
            return ClassifierOutput(None, logits)
        if self.config.num_labels == 1:
            terms = {
                "loss_sum": F.mse_loss(logits.squeeze(-1).float(), labels.float(), reduction="sum"),
                "count": logits.new_tensor(float(labels.numel()), dtype=torch.float32),
            }
        else:
            terms = classification_terms(logits, labels)
        return ClassifierOutput(_ratio(terms), logits, terms)


class BertForTokenClassification(_Head):
    """Per-token emissions (optionally through a BiLSTM), scored by softmax or by a CRF.

    With a CRF the tag sequence is the positions where `labels != -100` (or `label_mask`), in order: the
    usual NER setting of scoring only each word's first piece, never [CLS], [SEP] or padding.
    """

    google_tf_head = False  # Google's TF code has no tagger; `output_weights` would read back as a classifier

    def __init__(self, config: BertConfig):
        super().__init__(config, add_pooling_layer=False)
        self.dropout = self._dropout()
        features = config.hidden_size
        if config.lstm_hidden_size > 0:
            self.lstm = nn.LSTM(config.hidden_size, config.lstm_hidden_size, batch_first=True, bidirectional=True)
            features = 2 * config.lstm_hidden_size
        self.classifier = nn.Linear(features, config.num_labels)
        self.crf = CRF(config.num_labels) if config.use_crf else None
        self._init_head()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """labels (B, S) with -100 at positions to ignore -> logits (B, S, num_labels)."""
        hidden = self.dropout(self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state)
        if hasattr(self, "lstm"):
            hidden = self._bilstm(hidden, attention_mask)
        logits = self.classifier(hidden)
        if labels is None:
            return ClassifierOutput(None, logits)
        if self.crf is not None:  # whole tag sequences, normalised per labelled token like the softmax loss
            mask = labels != IGNORE_INDEX
            terms = {"loss_sum": -self.crf(logits, labels, mask, reduction="sum"), "count": mask.sum().float()}
        else:  # a sum over labelled tokens
            terms = classification_terms(logits.flatten(0, 1), labels.flatten())
        return ClassifierOutput(_ratio(terms), logits, terms)

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tags (B, S) at `mask` positions (Viterbi with a CRF, else argmax); -100 elsewhere."""
        if self.crf is not None:
            return self.crf.decode(logits, mask.bool())
        return logits.argmax(-1).masked_fill(~mask.bool(), IGNORE_INDEX)

    def _bilstm(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Run the BiLSTM over each sequence's real tokens only (the backward pass must not start in padding)."""
        if attention_mask is None:
            return self.lstm(hidden)[0]
        lengths = attention_mask.sum(-1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=hidden.shape[1])[0]


class BertForQuestionAnswering(_Head):
    """Start/end logits over the sequence for extractive QA (SQuAD)."""

    def __init__(self, config: BertConfig):
        super().__init__(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self._init_head()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> SpanOutput:
        """start/end_positions (B,) token indices of the answer (0 = [CLS] for no answer)."""
        hidden = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        start_logits, end_logits = self.qa_outputs(hidden).float().unbind(-1)  # (B, S) each
        if start_positions is None or end_positions is None:
            return SpanOutput(None, start_logits, end_logits)
        S = start_logits.shape[1]
        # Positions outside the window (answer truncated away) are ignored, as in Hugging Face.
        start = start_positions.long().clamp(0, S)
        end = end_positions.long().clamp(0, S)
        terms = {
            "loss_sum": (
                F.cross_entropy(start_logits, start, ignore_index=S, reduction="sum")
                + F.cross_entropy(end_logits, end, ignore_index=S, reduction="sum")
            )
            / 2,
            "count": ((start < S) & (end < S)).sum().float(),
        }
        return SpanOutput(_ratio(terms), start_logits, end_logits, terms)


class BertForMultipleChoice(_Head):
    """Each (context, choice) pair through the encoder; pooled [CLS] -> dropout -> one score per choice. A
    choice that is all padding (fewer choices than the batch's widest question) scores the lowest finite
    number: it is never picked and costs no loss (a finite score, so that "the model returned NaN or infinity"
    checks still hold)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dropout = self._dropout()
        self.classifier = nn.Linear(config.hidden_size, 1)
        self._init_head()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """input_ids, token_type_ids, attention_mask (B, C, S); labels (B,) the right choice -> logits (B, C)."""
        B, C, S = input_ids.shape
        flat = [x.reshape(B * C, S) if x is not None else None for x in (input_ids, token_type_ids, attention_mask)]
        pooled = self.bert(*flat).pooler_output  # (B*C, H)
        logits = self.classifier(self.dropout(pooled)).view(B, C)
        if attention_mask is not None:
            padding = attention_mask[..., 0] == 0  # [CLS] is real in every choice
            logits = logits.masked_fill(padding, torch.finfo(logits.dtype).min)
        if labels is None:
            return ClassifierOutput(None, logits)
        terms = classification_terms(logits, labels)
        return ClassifierOutput(_ratio(terms), logits, terms)
