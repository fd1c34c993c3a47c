"""The encoder and heads against Hugging Face `transformers` (the reference), on real and random weights."""

import dataclasses

import pytest
import torch
import torchcrf
import transformers

from bertforge.errors import BertforgeError
from bertforge.modeling import (
    BertConfig,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

TINY = BertConfig.from_preset("tiny", vocab_size=120, max_position_embeddings=40)


def hf_config(config: BertConfig, **extra) -> transformers.BertConfig:
    act = "gelu_pytorch_tanh" if config.hidden_act == "gelu_tanh" else config.hidden_act
    fields = {k: v for k, v in config.to_dict().items() if k in transformers.BertConfig().to_dict()}
    return transformers.BertConfig(**{**fields, "hidden_act": act, **extra})


def batch(config: BertConfig, seed: int = 0, B: int = 3, S: int = 16):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, S // 2 :] = 0  # padding in the batch
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, S // 3 :] = 1
    return ids, types, mask


@pytest.fixture(scope="module")
def minilm(sample):
    return sample("minilm")


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_real_minilm_matches_transformers(minilm, attn):
    ours = BertModel.from_pretrained(minilm).eval()
    ref = transformers.BertModel.from_pretrained(minilm, attn_implementation=attn).eval()
    ids, types, mask = batch(ours.config, S=24)
    with torch.no_grad():
        a = ours(ids, types, mask)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() <= 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max() <= 1e-5


@pytest.mark.slow
def test_minilm_round_trip_hf_bertforge_hf(minilm, tmp_path):
    original = transformers.BertModel.from_pretrained(minilm).state_dict()
    BertModel.from_pretrained(minilm).save_pretrained(tmp_path)
    again = transformers.BertModel.from_pretrained(tmp_path).state_dict()
    assert set(again) == set(original)
    for name, tensor in original.items():
        assert torch.equal(again[name], tensor), name


def _hf_pretraining(config: BertConfig, seed: int = 0, **extra) -> transformers.BertForPreTraining:
    torch.manual_seed(seed)
    model = transformers.BertForPreTraining(hf_config(config, **extra)).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorms, so a swapped name cannot go unnoticed
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.mark.parametrize("act,eps", [("gelu", 1e-12), ("gelu_tanh", 1e-7)])
def test_pretraining_matches_transformers(tmp_path, act, eps):
    config = dataclasses.replace(TINY, hidden_act=act, layer_norm_eps=eps)
    ref = _hf_pretraining(config)
    ref.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path).eval()
    ids, types, mask = batch(config)
    positions = torch.tensor([[1, 4, 7, 0], [2, 3, 0, 0], [1, 2, 0, 0]])
    weights = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.float)
    mlm_ids = torch.randint(5, config.vocab_size, positions.shape) * weights.long()
    nsp = torch.tensor([0, 1, 1])
    labels = torch.full_like(ids, -100)  # the same targets in Hugging Face's form
    for b in range(3):
        for p, i, w in zip(positions[b], mlm_ids[b], weights[b]):
            if w:
                labels[b, p] = i
    with torch.no_grad():
        a = ours(ids, types, mask, positions, mlm_ids, weights, nsp)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels, next_sentence_label=nsp)
    gathered = torch.gather(b.prediction_logits, 1, positions[..., None].expand(-1, -1, config.vocab_size))
    assert a.mlm_logits.shape == (3, 4, config.vocab_size)
    assert (a.mlm_logits - gathered).abs().max() <= 1e-5
    assert (a.nsp_logits - b.seq_relationship_logits).abs().max() <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    # Without positions the MLM head covers every token, like transformers.
    full = ours(ids, types, mask).mlm_logits
    assert (full - b.prediction_logits).abs().max() <= 1e-5


def test_pretraining_round_trip_keeps_every_tensor(tmp_path):
    ref = _hf_pretraining(TINY, seed=1)
    ref.save_pretrained(tmp_path / "hf")
    BertForPreTraining.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "ours")
    again = transformers.BertForPreTraining.from_pretrained(tmp_path / "ours").state_dict()
    for name, tensor in ref.state_dict().items():
        assert torch.equal(again[name], tensor), name


@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification_matches_transformers(tmp_path, num_labels):
    torch.manual_seed(2)
    problem = "regression" if num_labels == 1 else "single_label_classification"
    ref = transformers.BertForSequenceClassification(
        hf_config(TINY, num_labels=num_labels, problem_type=problem)
    ).eval()
    ref.save_pretrained(tmp_path)
    ours = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert ours.config.num_labels == num_labels
    ids, types, mask = batch(TINY)
    labels = torch.tensor([0.5, -1.0, 2.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        a = ours(ids, types, mask, labels=labels)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
    assert (a.logits - b.logits).abs().max() <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5


def test_multiple_choice_matches_transformers_both_ways(tmp_path):
    torch.manual_seed(4)
    ids, types, mask = (x.view(2, 3, -1)[:, :, :8] for x in batch(TINY, B=6))  # (2 questions, 3 choices, 8)
    mask = mask.clone()
    mask[0, 1, 5:] = 0  # a shorter choice
    labels = torch.tensor([2, 0])
    ref = transformers.BertForMultipleChoice(hf_config(TINY)).eval()
    ref.save_pretrained(tmp_path / "hf")
    ours = BertForMultipleChoice.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        a = ours(ids, types, mask, labels=labels)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
    assert a.logits.shape == (2, 3) and (a.logits - b.logits).abs().max() <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    ours.save_pretrained(tmp_path / "ours")  # and back: transformers loads ours to the same outputs
    again = transformers.BertForMultipleChoice.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        c = again(input_ids=ids, token_type_ids=types, attention_mask=mask)
    assert (c.logits - b.logits).abs().max() <= 1e-5


def test_a_padded_choice_is_never_chosen_and_costs_nothing():
    """A question with two choices padded to three scores as if asked with its two alone."""
    torch.manual_seed(5)
    model = BertForMultipleChoice(TINY).eval()
    ids, types, mask = (x.view(2, 3, -1)[:, :, :8] for x in batch(TINY, B=6))
    ids, types, mask = ids.clone(), types.clone(), mask.clone()
    ids[1, 2], types[1, 2], mask[1, 2] = 0, 0, 0  # question 1 has two choices
    labels = torch.tensor([1, 1])
    with torch.no_grad():
        padded = model(ids, types, mask, labels=labels)
        alone = model(ids[1:, :2], types[1:, :2], mask[1:, :2], labels=labels[1:])
    assert padded.logits[1].argmax() != 2 and torch.isfinite(padded.logits).all()
    assert torch.allclose(padded.logits[1, :2], alone.logits[0], atol=1e-6)
    first = model(ids[:1], types[:1], mask[:1], labels=labels[:1])
    assert torch.allclose(padded.terms["loss_sum"], first.terms["loss_sum"] + alone.terms["loss_sum"], atol=1e-5)


def test_token_classification_and_qa_match_transformers(tmp_path):
    torch.manual_seed(3)
    ids, types, mask = batch(TINY)
    ref = transformers.BertForTokenClassification(hf_config(TINY, num_labels=5)).eval()
    ref.save_pretrained(tmp_path / "tok")
    ours = BertForTokenClassification.from_pretrained(tmp_path / "tok").eval()
    labels = torch.randint(0, 5, ids.shape).masked_fill(mask == 0, -100)
    with torch.no_grad():
        a, b = (
            ours(ids, types, mask, labels=labels),
            ref(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels),
        )
    assert (a.logits - b.logits).abs().max() <= 1e-5 and abs(a.loss.item() - b.loss.item()) <= 1e-5

    ref = transformers.BertForQuestionAnswering(hf_config(TINY)).eval()
    ref.save_pretrained(tmp_path / "qa")
    ours = BertForQuestionAnswering.from_pretrained(tmp_path / "qa").eval()
    start, end = torch.tensor([1, 2, 99]), torch.tensor([3, 2, 99])  # 99: answer outside the window
    with torch.no_grad():
        a = ours(ids, types, mask, start_positions=start, end_positions=end)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask, start_positions=start, end_positions=end)
    assert (a.start_logits - b.start_logits).abs().max() <= 1e-5
    assert (a.end_logits - b.end_logits).abs().max() <= 1e-5
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5


@pytest.mark.filterwarnings("ignore:where received a uint8 condition:UserWarning")  # inside pytorch-crf's decode
@pytest.mark.parametrize("lstm", [0, 8], ids=["crf", "bilstm-crf"])
def test_token_classification_with_crf_matches_pytorch_crf(lstm):
    """The CRF head (optionally over a BiLSTM) against references built from its own encoder output: each
    sequence through torch's LSTM alone, unpadded (the backward direction must start at its last real token),
    and pytorch-crf scoring and decoding the labelled positions only (not [CLS], [SEP], padding or -100)."""
    torch.manual_seed(4)
    config = dataclasses.replace(TINY, num_labels=5, use_crf=True, lstm_hidden_size=lstm)
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # transitions far from their small initial values, so that they matter
        for p in model.crf.parameters():
            p.normal_(0, 1)
    ids, types, mask = batch(config)
    labels = torch.randint(0, 5, ids.shape).masked_fill(mask == 0, -100)
    labels[:, 0] = -100  # [CLS]
    labels[0, 5:9:2] = -100  # continuation pieces of words
    labelled = labels != -100
    reference_crf = torchcrf.CRF(5, batch_first=True)
    reference_crf.load_state_dict(model.crf.state_dict())

    out = model(ids, types, mask, labels=labels)
    hidden = model.bert(ids, types, mask).last_hidden_state
    llh, decoded, rows = 0.0, model.decode(out.logits, labelled), []
    for b in range(len(ids)):
        n = int(mask[b].sum())
        features = model.lstm(hidden[b : b + 1, :n])[0] if lstm else hidden[b : b + 1, :n]
        logits = model.classifier(features)  # (1, n, 5)
        torch.testing.assert_close(out.logits[b, :n], logits[0], rtol=1e-5, atol=1e-5)
        keep = labelled[b, :n]
        llh = llh + reference_crf(logits[:, keep], labels[b : b + 1, :n][:, keep], reduction="sum")
        rows.append((decoded[b][labelled[b]].tolist(), reference_crf.decode(logits[:, keep])[0]))
    expected = -llh / labelled.sum()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert all(ours == theirs for ours, theirs in rows), rows
    assert (decoded[~labelled] == -100).all()
    head = {n: p for n, p in model.named_parameters() if not n.startswith(("bert.", "crf."))}
    crf = [n for n, _ in model.crf.named_parameters()]
    assert crf == [n for n, _ in reference_crf.named_parameters()]
    ours = torch.autograd.grad(out.loss, [*head.values(), *model.crf.parameters()])
    theirs = torch.autograd.grad(expected, [*head.values(), *reference_crf.parameters()])
    for name, a, b in zip([*head, *crf], ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_backbone_checkpoint_initialises_heads_and_reports_them(tmp_path, caplog):
    BertModel(TINY).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="bertforge"):
        model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert model.classifier.out_features == 4
    assert "classifier.weight" in caplog.text
    # and a checkpoint with heads loads into the bare encoder, which reports the unused heads (a detail: -v)
    BertForPreTraining(TINY).save_pretrained(tmp_path / "pt")
    with caplog.at_level("DEBUG", logger="bertforge"):
        BertModel.from_pretrained(tmp_path / "pt")
    assert "cls.seq_relationship.weight" in caplog.text


def test_mismatched_checkpoints_name_every_tensor(tmp_path):
    BertModel(TINY).save_pretrained(tmp_path)
    with pytest.raises(BertforgeError, match=r"word_embeddings\.weight \(120, 32\) \(model expects \(99, 32\)\)"):
        BertModel.from_pretrained(tmp_path, vocab_size=99)
    with pytest.raises(BertforgeError, match=r"missing: .*encoder\.layer\.2\.attention\.self\.query\.weight"):
        BertModel.from_pretrained(tmp_path, num_hidden_layers=3)
    with pytest.raises(BertforgeError, match=r"unexpected: bert\.encoder\.layer\.1\."):
        BertModel.from_pretrained(tmp_path, num_hidden_layers=1)


def test_pytorch_bin_is_loaded_without_unpickling_code(tmp_path):
    model = BertModel(TINY)
    model.save_pretrained(tmp_path / "ok")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    loaded = BertModel.from_pretrained(tmp_path / "bin")
    assert torch.equal(loaded.encoder.layer[1].output.dense.weight, model.encoder.layer[1].output.dense.weight)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(BertforgeError, match="cannot be read safely"):
        BertModel.from_pretrained(tmp_path / "bin")


def test_save_refuses_to_overwrite(tmp_path):
    model = BertModel(TINY)
    model.save_pretrained(tmp_path)
    with pytest.raises(BertforgeError, match="already exist"):
        model.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_initialisation_is_berts():
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, hidden_size=64, intermediate_size=256)
    model = BertForPreTraining(config)
    std = config.initializer_range
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert weight.abs().max() <= 2 * std + 1e-7
    assert abs(weight.std().item() - 0.88 * std) < 0.1 * std  # std of a ±2σ-truncated normal is 0.88σ
    assert all(torch.all(b == 0) for n, b in model.named_parameters() if n.endswith("bias"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert model.cls.seq_relationship.weight.abs().max() <= 2 * std + 1e-7


def test_bad_inputs_are_clear_errors():
    model = BertModel(TINY)
    with pytest.raises(BertforgeError, match="exceeds max_position_embeddings 40"):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(BertforgeError, match=r"shape \(batch, seq_len\)"):
        model(torch.ones(41, dtype=torch.long))
