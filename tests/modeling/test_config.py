import json

import pytest
import transformers

from bertforge.errors import BertforgeError
from bertforge.modeling import PRESETS, BertConfig

ZOO_YAML = """\
bert_network: 'base'
batch_size: 32
base_net_cfg:
    seq_length: 128
    vocab_size: 21128
    hidden_size: 768
    num_hidden_layers: 12
    num_attention_heads: 12
    intermediate_size: 3072
    hidden_act: "gelu"
    hidden_dropout_prob: 0.1
    attention_probs_dropout_prob: 0.1
    max_position_embeddings: 512
    type_vocab_size: 2
    initializer_range: 0.02
    use_relative_positions: False
    dtype: mstype.float32
    compute_type: mstype.float16
nezha_net_cfg:
    seq_length: 128
    vocab_size: 21128
    hidden_size: 1024
    num_hidden_layers: 24
    num_attention_heads: 16
    intermediate_size: 4096
    hidden_act: "gelu"
    hidden_dropout_prob: 0.1
    attention_probs_dropout_prob: 0.1
    max_position_embeddings: 512
    type_vocab_size: 2
    initializer_range: 0.02
    use_relative_positions: True
    dtype: mstype.float32
    compute_type: mstype.float16
"""


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_and_load_round_trip(tmp_path, suffix):
    config = BertConfig.from_preset("nezha-base", relative_position_type="learned", id2label={0: "neg", 1: "pos"})
    config.save(tmp_path / f"c{suffix}")
    assert BertConfig.from_file(tmp_path / f"c{suffix}") == config


def test_presets():
    assert set(PRESETS) == {"bert-base", "bert-large", "nezha-base", "nezha-large", "tiny"}
    large = BertConfig.from_preset("bert-large")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads) == (1024, 24, 16)
    assert BertConfig.from_preset("nezha-base").use_relative_positions
    with pytest.raises(BertforgeError, match="unknown preset 'bert-huge'"):
        BertConfig.from_preset("bert-huge")


def test_model_zoo_yaml(tmp_path):
    (tmp_path / "pretrain_config.yaml").write_text(ZOO_YAML)
    base = BertConfig.from_file(tmp_path / "pretrain_config.yaml")
    assert (base.hidden_size, base.layer_norm_eps, base.hidden_act) == (768, 1e-7, "gelu_tanh")
    assert not base.use_relative_positions
    nezha = BertConfig.from_model_zoo_yaml(tmp_path / "pretrain_config.yaml", "nezha")
    assert nezha.use_relative_positions and nezha.relative_position_type == "learned"
    assert (nezha.max_relative_position, nezha.hidden_size) == (16, 1024)
    with pytest.raises(BertforgeError, match="no 'large_net_cfg' section"):
        BertConfig.from_model_zoo_yaml(tmp_path / "pretrain_config.yaml", "large")


def test_unknown_keys_are_named_with_a_suggestion(tmp_path):
    (tmp_path / "c.yaml").write_text("hidden_sise: 64\n")
    with pytest.raises(BertforgeError, match=r"c.yaml: unknown config key 'hidden_sise'; did you mean 'hidden_size'"):
        BertConfig.from_file(tmp_path / "c.yaml")
    with pytest.raises(BertforgeError, match="not valid YAML"):
        (tmp_path / "bad.yaml").write_text("a: [1,\n")
        BertConfig.from_file(tmp_path / "bad.yaml")
    with pytest.raises(BertforgeError, match="does not exist"):
        BertConfig.from_file(tmp_path / "missing.json")
    with pytest.raises(BertforgeError, match="not a multiple"):
        BertConfig(hidden_size=100, num_attention_heads=12)


def test_hugging_face_config_both_ways(tmp_path):
    hf = transformers.BertConfig(
        vocab_size=99, hidden_size=48, num_attention_heads=4, hidden_act="gelu_new", num_labels=3, layer_norm_eps=1e-7
    )
    hf.save_pretrained(tmp_path)
    ours = BertConfig.from_file(tmp_path / "config.json")
    assert (ours.vocab_size, ours.hidden_size, ours.hidden_act, ours.num_labels, ours.layer_norm_eps) == (
        99,
        48,
        "gelu_tanh",
        3,
        1e-7,
    )
    (tmp_path / "config.json").write_text(json.dumps(ours.to_hf_dict()))
    again = transformers.BertConfig.from_pretrained(tmp_path)
    assert (again.vocab_size, again.hidden_size, again.num_labels, again.hidden_act) == (99, 48, 3, "gelu_pytorch_tanh")
