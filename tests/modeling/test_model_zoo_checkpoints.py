"""MindSpore model-zoo checkpoints (real files written by MindSpore 2.10, see scripts/make_mindspore_fixtures.py)
loaded into bertforge and checked against `transformers` given the same weights by an independent mapping."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.formats.mindspore_ckpt import read_mindspore_checkpoint
from bertforge.modeling import BertConfig, BertForPreTraining, BertModel
from tests.modeling.test_nezha import loop_relative_attention

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mindspore"
YAML = FIXTURES / "pretrain_config.yaml"


def zoo_to_hf(zoo: dict[str, np.ndarray], layers: int) -> dict[str, torch.Tensor]:
    """The parameter table of the issue, spelled out name by name."""
    e, out = "bert.bert.", {}
    names = {
        "bert.embeddings.word_embeddings.weight": e + "bert_embedding_lookup.embedding_table",
        "bert.embeddings.token_type_embeddings.weight": e
        + "bert_embedding_postprocessor.token_type_embedding.embedding_table",
        "bert.embeddings.position_embeddings.weight": e
        + "bert_embedding_postprocessor.full_position_embedding.embedding_table",
        "bert.embeddings.LayerNorm.weight": e + "bert_embedding_postprocessor.layernorm.gamma",
        "bert.embeddings.LayerNorm.bias": e + "bert_embedding_postprocessor.layernorm.beta",
        "bert.pooler.dense.weight": e + "dense.weight",
        "bert.pooler.dense.bias": e + "dense.bias",
        "cls.predictions.transform.dense.weight": "bert.cls1.dense.weight",
        "cls.predictions.transform.dense.bias": "bert.cls1.dense.bias",
        "cls.predictions.transform.LayerNorm.weight": "bert.cls1.layernorm.gamma",
        "cls.predictions.transform.LayerNorm.bias": "bert.cls1.layernorm.beta",
        "cls.predictions.bias": "bert.cls1.output_bias",
        "cls.seq_relationship.weight": "bert.cls2.dense.weight",
        "cls.seq_relationship.bias": "bert.cls2.dense.bias",
    }
    for n in range(layers):
        hf, ms = f"bert.encoder.layer.{n}.", f"{e}bert_encoder.layers.{n}."
        for p in ("query", "key", "value"):
            names[f"{hf}attention.self.{p}.weight"] = f"{ms}attention.attention.{p}_layer.weight"
            names[f"{hf}attention.self.{p}.bias"] = f"{ms}attention.attention.{p}_layer.bias"
        for side, zoo_side in (("weight", "gamma"), ("bias", "beta")):
            names[f"{hf}attention.output.dense.{side}"] = f"{ms}attention.output.dense.{side}"
            names[f"{hf}attention.output.LayerNorm.{side}"] = f"{ms}attention.output.layernorm.{zoo_side}"
            names[f"{hf}intermediate.dense.{side}"] = f"{ms}intermediate.{side}"
            names[f"{hf}output.dense.{side}"] = f"{ms}output.dense.{side}"
            names[f"{hf}output.LayerNorm.{side}"] = f"{ms}output.layernorm.{zoo_side}"
    for hf, ms in names.items():
        out[hf] = torch.from_numpy(zoo[ms])
    return out


def inputs(config: BertConfig):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (2, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    types = (torch.arange(20) >= 9).long().expand(2, -1)
    positions = torch.tensor([[1, 5, 10], [2, 3, 0]])
    return ids, types, mask, positions


def test_bert_ckpt_matches_transformers_with_the_same_weights():
    config = BertConfig.from_model_zoo_yaml(YAML)
    assert (config.layer_norm_eps, config.hidden_act) == (1e-7, "gelu_tanh")
    ours = BertForPreTraining.from_pretrained(FIXTURES / "bert_tiny.ckpt", config=YAML).eval()
    zoo = dict(np.load(FIXTURES / "bert_tiny.npz"))
    ref = transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
            hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=1e-7,
        )
    ).eval()
    missing, unexpected = ref.load_state_dict(zoo_to_hf(zoo, 2), strict=False)
    assert set(missing) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"} and not unexpected
    ref.tie_weights()
    ids, types, mask, positions = inputs(config)
    with torch.no_grad():
        a = ours(ids, types, mask, masked_lm_positions=positions)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask)
    gathered = torch.gather(b.prediction_logits, 1, positions[..., None].expand(-1, -1, 128))
    assert (a.mlm_logits - gathered).abs().max() <= 1e-5
    assert (a.nsp_logits - b.seq_relationship_logits).abs().max() <= 1e-5


def zoo_nezha(zoo: dict[str, np.ndarray], ids, types, mask, positions, **sides):
    """The model zoo's NEZHA computed straight from a checkpoint's arrays, by their model-zoo names, in float64:
    word + token-type embeddings (no absolute positions) and LayerNorm; per layer, relative attention by the loop
    formula of tests/modeling/test_nezha.py with the layer's own learned table (2k+1, d) (k from its size),
    dense + residual + LayerNorm, GELU feed-forward + residual + LayerNorm; the [CLS] pooler (tanh); the MLM
    transform with the decoder tied to the embedding table, and the NSP dense. LayerNorm eps 1e-7 and tanh GELU
    are the model zoo's (as for BERT above). `sides` drops a relative term (key_side/value_side=False)."""
    import torch.nn.functional as F

    def w(name: str) -> torch.Tensor:
        return torch.from_numpy(zoo[name]).double()

    def dense(x, name):
        return F.linear(x, w(f"{name}.weight"), w(f"{name}.bias"))

    def norm(x, name):
        return F.layer_norm(x, x.shape[-1:], w(f"{name}.gamma"), w(f"{name}.beta"), eps=1e-7)

    e = "bert.bert."
    table = w(e + "bert_embedding_lookup.embedding_table")
    post = e + "bert_embedding_postprocessor."
    x = norm(table[ids] + w(post + "token_type_embedding.embedding_table")[types], post + "layernorm")
    B, S, H = x.shape
    layers = sorted({int(n.split(".")[4]) for n in zoo if n.startswith(e + "bert_encoder.layers.")})
    for n in layers:
        layer = f"{e}bert_encoder.layers.{n}."
        att = layer + "attention.attention."
        relative = w(att + "_generate_relative_positions_embeddings.embeddings_table")
        heads = H // relative.shape[1]
        q, key, v = (dense(x, f"{att}{p}_layer").view(B, S, heads, -1) for p in ("query", "key", "value"))
        k = (relative.shape[0] - 1) // 2
        context = loop_relative_attention(q, key, v, mask, relative, k, **sides)
        x = norm(x + dense(context, layer + "attention.output.dense"), layer + "attention.output.layernorm")
        inner = F.gelu(dense(x, layer + "intermediate"), approximate="tanh")
        x = norm(x + dense(inner, layer + "output.dense"), layer + "output.layernorm")
    pooled = torch.tanh(dense(x[:, 0], e + "dense"))
    at = x[torch.arange(B)[:, None], positions]  # (B, P, H)
    mlm = norm(F.gelu(dense(at, "bert.cls1.dense"), approximate="tanh"), "bert.cls1.layernorm")
    return F.linear(mlm, table, w("bert.cls1.output_bias")), dense(pooled, "bert.cls2.dense")


def test_nezha_ckpt_outputs_equal_the_model_zoo_formulas():
    """Values, not shapes: the NEZHA checkpoint's MLM and NSP logits against `zoo_nezha`, both in float64. At
    these weights (about 0.02) the key-side relative term moves the logits by only ~4e-6, so the comparison is
    to 1e-10, and without either relative term the reference is much further off than that."""
    config = BertConfig.from_model_zoo_yaml(YAML, "nezha")
    model = BertForPreTraining.from_pretrained(FIXTURES / "nezha_tiny.ckpt", config=config).eval().double()
    zoo = dict(np.load(FIXTURES / "nezha_tiny.npz"))
    ids, types, mask, positions = inputs(config)
    with torch.no_grad():
        out = model(ids, types, mask, masked_lm_positions=positions)
    mlm, nsp = zoo_nezha(zoo, ids, types, mask, positions)
    ours = torch.cat([out.mlm_logits.flatten(), out.nsp_logits.flatten()])
    reference = torch.cat([mlm.flatten(), nsp.flatten()])
    assert (ours - reference).abs().max() <= 1e-10
    for side in ("key_side", "value_side"):
        partial = zoo_nezha(zoo, ids, types, mask, positions, **{side: False})
        assert (torch.cat([t.flatten() for t in partial]) - reference).abs().max() > 1e-6, side


def test_nezha_ckpt_places_each_learned_table_in_its_layer():
    config = BertConfig.from_model_zoo_yaml(YAML, "nezha")
    model = BertForPreTraining.from_pretrained(FIXTURES / "nezha_tiny.ckpt", config=config)
    zoo = np.load(FIXTURES / "nezha_tiny.npz")
    for n, layer in enumerate(model.bert.encoder.layer):
        table = zoo[
            f"bert.bert.bert_encoder.layers.{n}.attention.attention._generate_relative_positions_embeddings.embeddings_table"
        ]
        assert table.shape == (33, 8)
        assert np.array_equal(layer.attention.self.relative_positions_embeddings.weight.detach().numpy(), table)
        assert np.array_equal(
            layer.attention.self.query.weight.detach().numpy(),
            zoo[f"bert.bert.bert_encoder.layers.{n}.attention.attention.query_layer.weight"],
        )


@pytest.mark.parametrize("name,network", [("bert_tiny", "base"), ("nezha_tiny", "nezha")])
def test_save_mindspore_round_trip(tmp_path, name, network):
    config = BertConfig.from_model_zoo_yaml(YAML, network)
    model = BertForPreTraining.from_pretrained(FIXTURES / f"{name}.ckpt", config=config).eval()
    model.save_mindspore(tmp_path / "out.ckpt")
    original = read_mindspore_checkpoint(FIXTURES / f"{name}.ckpt")
    written = read_mindspore_checkpoint(tmp_path / "out.ckpt")
    model_entries = {k: v for k, v in original.items() if k.startswith(("bert.bert.", "bert.cls"))}
    if network == "nezha":  # the unused absolute table is not part of our NEZHA
        del model_entries["bert.bert.bert_embedding_postprocessor.full_position_embedding.embedding_table"]
    assert set(written) == set(model_entries)
    for k, v in model_entries.items():
        assert np.array_equal(written[k], v), k
    with pytest.raises(BertforgeError, match="already exists"):
        model.save_mindspore(tmp_path / "out.ckpt")


def test_convert_command_ckpt_to_hf_and_back(tmp_path, capsys):
    shutil.copy(FIXTURES / "bert_tiny.ckpt", tmp_path)
    shutil.copy(YAML, tmp_path)  # found beside the weights, as the model zoo keeps them
    assert cli(["convert", str(tmp_path / "bert_tiny.ckpt"), str(tmp_path / "hf")]) == 0
    assert "pretraining" in capsys.readouterr().out
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ours = BertForPreTraining.from_pretrained(tmp_path / "bert_tiny.ckpt").eval()
    ids, types, mask, _ = inputs(ours.config)
    with torch.no_grad():
        assert (
            hf(input_ids=ids, token_type_ids=types, attention_mask=mask).prediction_logits
            - ours(ids, types, mask).mlm_logits
        ).abs().max() <= 1e-5
    assert cli(["convert", str(tmp_path / "hf"), str(tmp_path / "back.ckpt"), "--to", "mindspore"]) == 0
    back = read_mindspore_checkpoint(tmp_path / "back.ckpt")
    original = read_mindspore_checkpoint(FIXTURES / "bert_tiny.ckpt")
    assert all(np.array_equal(back[k], original[k]) for k in back)
    # refusing to overwrite is a clean one-line error
    assert cli(["convert", str(tmp_path / "hf"), str(tmp_path / "back.ckpt"), "--to", "mindspore"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_ckpt_without_config_asks_for_one(tmp_path):
    shutil.copy(FIXTURES / "bert_tiny.ckpt", tmp_path)
    with pytest.raises(BertforgeError, match="no config file beside the weights.*pass config="):
        BertModel.from_pretrained(tmp_path / "bert_tiny.ckpt")
    with pytest.raises(BertforgeError, match="wrong shape: bert.embeddings.word_embeddings.weight"):
        BertModel.from_pretrained(
            tmp_path / "bert_tiny.ckpt", config=BertConfig.from_model_zoo_yaml(YAML), vocab_size=99
        )
