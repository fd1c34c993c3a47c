import dataclasses
import json
import re
from pathlib import Path

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


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("use_relative_positions", "false", r"use_relative_positions must be true or false, got 'false' \(a string\)"),
        ("use_relative_position", "false", r"use_relative_positions must be true or false, got 'false' \(a string\)"),
        ("vocab_size", "30522", r"vocab_size must be an integer >= 1, got '30522' \(a string\)"),
        ("num_hidden_layers", True, r"num_hidden_layers must be an integer >= 1, got True \(a boolean\)"),
        ("hidden_size", 384.0, r"hidden_size must be an integer >= 1, got 384.0 \(a number\)"),
        ("num_attention_heads", 0, "num_attention_heads must be an integer >= 1, got 0"),
        ("num_attention_heads", 5, "hidden_size 384 is not a multiple of num_attention_heads 5"),
        ("hidden_dropout_prob", 1.0, r"hidden_dropout_prob must be a number in \[0, 1\), got 1.0"),
        ("attention_probs_dropout_prob", None, r"attention_probs_dropout_prob must be a number in \[0, 1\), got None"),
        ("layer_norm_eps", 0, "layer_norm_eps must be a number > 0, got 0$"),
        ("hidden_act", "swish", "hidden_act must be one of gelu, gelu_tanh, .*, got 'swish'"),
        ("relative_position_type", "sinusoid", "relative_position_type must be one of functional, learned"),
        ("pad_token_id", 30522, "pad_token_id 30522 is not below vocab_size 30522"),
        ("id2label", {"zero": "neg"}, "id2label must map label ids"),
        ("id2label", 3, r"id2label must be a mapping or null, got 3 \(an integer\)"),
        ("classifier_dropout", "0.1", "classifier_dropout must be a number in .* or null, got '0.1'"),
    ],
)
def test_config_json_with_a_wrong_type_or_range_is_an_error_naming_file_and_key(sample, tmp_path, key, value, expected):
    values = json.loads((sample("minilm") / "config.json").read_text()) | {key: value}
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(BertforgeError, match="^" + re.escape(f"{tmp_path / 'config.json'}: ") + expected):
        BertConfig.from_file(tmp_path / "config.json")


def test_real_configs_still_load(sample, tmp_path):
    minilm = BertConfig.from_file(sample("minilm") / "config.json")  # a transformers config.json, extra keys
    assert (minilm.hidden_size, minilm.num_hidden_layers, minilm.use_relative_positions) == (384, 6, False)
    zoo = Path(__file__).parents[1] / "fixtures" / "mindspore" / "pretrain_config.yaml"
    assert not BertConfig.from_model_zoo_yaml(zoo, "base").use_relative_positions
    assert BertConfig.from_model_zoo_yaml(zoo, "nezha").use_relative_positions
    labelled = transformers.BertConfig(num_labels=3, hidden_size=48, num_attention_heads=4, classifier_dropout=0.2)
    labelled.save_pretrained(tmp_path)
    ours = BertConfig.from_file(tmp_path / "config.json")
    assert ours.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert (ours.num_labels, ours.classifier_dropout) == (3, 0.2)
    # YAML 1.2 numbers: an exponent without a dot is a float, as OmegaConf and JSON read it
    (tmp_path / "c.yaml").write_text("hidden_size: 64\nnum_attention_heads: 2\nlayer_norm_eps: 1e-7\n")
    assert BertConfig.from_file(tmp_path / "c.yaml").layer_norm_eps == 1e-7
    assert BertConfig(hidden_dropout_prob=0).hidden_dropout_prob == 0.0  # an integer is a valid float


def test_rules_cover_every_field():
    from bertforge.modeling.config import _RULES

    assert set(_RULES) == {f.name for f in dataclasses.fields(BertConfig)} - {"extra"}
