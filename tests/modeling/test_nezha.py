"""NEZHA relative positions against a direct, loop-based reading of the formula:
R[i,j] = table[clip(j-i, -k, k) + k];  scores[i,j] = (q_i.k_j + q_i.R[i,j]) / sqrt(d);
context_i = sum_j p[i,j] (v_j + R[i,j])."""

import dataclasses
import math

import pytest
import torch

from bertforge.modeling import BertConfig, BertForPreTraining, BertModel
from bertforge.modeling.attention import BertSelfAttention, sinusoid_relative_table
from bertforge.modeling.bert import extended_attention_mask


def loop_attention(att: BertSelfAttention, hidden, attention_mask, table, k, key_side=True, value_side=True):
    """One head at a time, one (i, j) pair at a time."""
    B, S, H = hidden.shape
    q, key, v = (proj(hidden).view(B, S, att.num_heads, att.head_dim) for proj in (att.query, att.key, att.value))
    return loop_relative_attention(q, key, v, attention_mask, table, k, key_side, value_side)


def loop_relative_attention(q, key, v, attention_mask, table, k, key_side=True, value_side=True):
    """The formula above for projected q, key, v (B, S, nh, d), attention_mask (B, S) (1 = a real token) and a
    table (2k+1, d): the context (B, S, nh·d), in float64."""
    B, S, nh, d = q.shape
    out = torch.zeros(B, S, nh, d, dtype=torch.float64)
    for b in range(B):
        for h in range(nh):
            for i in range(S):
                scores = []
                for j in range(S):
                    r = table[min(max(j - i, -k), k) + k]
                    s = (q[b, i, h] @ key[b, j, h] + key_side * (q[b, i, h] @ r)) / math.sqrt(d)
                    scores.append(s if attention_mask[b, j] else torch.tensor(-1e30, dtype=torch.float64))
                p = torch.softmax(torch.stack(scores), 0)
                for j in range(S):
                    r = table[min(max(j - i, -k), k) + k]
                    out[b, i, h] += p[j] * (v[b, j, h] + value_side * r)
    return out.reshape(B, S, nh * d)


def nezha(kind: str, k: int) -> BertConfig:
    return BertConfig.from_preset(
        "tiny",
        use_relative_positions=True,
        relative_position_type=kind,
        max_relative_position=k,
        max_position_embeddings=24,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )


@pytest.mark.parametrize("kind", ["functional", "learned"])
def test_relative_attention_equals_the_loop_formula(kind):
    torch.manual_seed(0)
    k = 3  # small, so that clipping happens inside a 12-token sequence
    model = BertModel(nezha(kind, k)).double().eval()
    att = model.encoder.layer[0].attention.self
    if kind == "learned":
        table = att.relative_positions_embeddings.weight
        with torch.no_grad():
            table.normal_(0, 1)  # large enough that an error on either side shows
    else:
        table = model.encoder.relative_table
    hidden = torch.randn(2, 12, 32, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        ours = att(
            hidden, extended_attention_mask(mask, torch.float64, 2, 12, None), table if kind == "functional" else None
        )
        ref = loop_attention(att, hidden, mask, table.double(), k)
    assert (ours - ref).abs().max() < 1e-10
    # The comparison sees each relative term: the formula without either one is far from ours.
    for sides in ({"key_side": False}, {"value_side": False}):
        partial = loop_attention(att, hidden, mask, table.double(), k, **sides)
        assert (ours - partial).abs().max() > 1e-2, sides


def test_functional_table_is_huaweis_sinusoid():
    k, depth = 64, 8
    table = sinusoid_relative_table(k, depth).double()
    for pos in range(2 * k + 1):
        for i in range(depth // 2):
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / depth)), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / depth)), abs=1e-6)


@pytest.mark.parametrize("kind,k", [("functional", 64), ("learned", 16)])
def test_nezha_runs_at_every_length_and_has_no_absolute_positions(kind, k):
    torch.manual_seed(0)
    config = dataclasses.replace(nezha(kind, k), max_position_embeddings=128)
    model = BertForPreTraining(config).eval()
    names = [n for n, _ in model.named_parameters()]
    assert not any("position_embeddings.weight" in n and "relative" not in n for n in names)
    learned = [n for n in names if "relative_positions_embeddings" in n]
    assert len(learned) == (config.num_hidden_layers if kind == "learned" else 0)
    for length in (1, 2, 17, 128):
        out = model(torch.randint(5, 1000, (2, length)))
        assert out.mlm_logits.shape == (2, length, config.vocab_size) and torch.isfinite(out.mlm_logits).all()
    out = model(torch.randint(5, 1000, (2, 20)), next_sentence_labels=torch.tensor([0, 1]))
    out.loss.backward()


def test_nezha_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BertModel(nezha("learned", 16))
    model.save_pretrained(tmp_path)
    loaded = BertModel.from_pretrained(tmp_path)
    assert loaded.config.use_relative_positions and loaded.config.relative_position_type == "learned"
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n


def test_huaweis_published_layout_loads_as_it_is(tmp_path):
    """NEZHA-PyTorch's release: `bert_config.json` with `use_relative_position`/`max_relative_position`, weights
    in `pytorch_model.bin` under `bert.` names; Google's `bert_config.json` (no relative positions) likewise."""
    import json

    from bertforge.modeling import BertConfig, BertModel

    torch.manual_seed(0)
    ours = BertModel(BertConfig.from_preset("tiny", vocab_size=120, use_relative_positions=True)).eval()
    huawei = {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": ours.config.hidden_size, "initializer_range": 0.02,
        "intermediate_size": ours.config.intermediate_size, "max_position_embeddings": 512,
        "max_relative_position": ours.config.max_relative_position,
        "num_attention_heads": ours.config.num_attention_heads,
        "num_hidden_layers": ours.config.num_hidden_layers, "type_vocab_size": 2, "vocab_size": 120,
        "use_relative_position": True,
    }  # fmt: skip
    (tmp_path / "bert_config.json").write_text(json.dumps(huawei))
    state = {f"bert.{k}": v for k, v in ours.state_dict().items() if "relative_positions_encoding" not in k}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = BertModel.from_pretrained(tmp_path).eval()
    assert loaded.config.use_relative_positions and loaded.config.relative_position_type == "functional"
    ids = torch.randint(0, 120, (2, 9))
    with torch.no_grad():
        assert torch.equal(loaded(ids).last_hidden_state, ours(ids).last_hidden_state)
    google = {k: v for k, v in huawei.items() if k not in ("use_relative_position", "max_relative_position")}
    (tmp_path / "bert_config.json").write_text(json.dumps(google))
    assert not BertConfig.from_file(tmp_path / "bert_config.json").use_relative_positions
