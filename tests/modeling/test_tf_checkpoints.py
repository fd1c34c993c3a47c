"""Google BERT / Huawei NEZHA TensorFlow checkpoints (real files written by TensorFlow 2.21 through Google's
`modeling.py`, see scripts/make_tf_checkpoint_fixtures.py) loaded into bertforge, against the outputs TensorFlow
computed for them, and written back."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.formats.mindspore_ckpt import read_mindspore_checkpoint
from bertforge.formats.tf_checkpoint import TfCheckpoint
from bertforge.modeling import BertConfig, BertForPreTraining
from bertforge.modeling.auto import load_model
from tests.formats.test_tf_checkpoint import rewrite_entry

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tf_checkpoint"
ZOO = FIXTURES.parent / "mindspore"
TOLERANCE = 1e-5


def tf_outputs(folder: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / folder / "outputs.npz"))


def feed(out: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(out[k]).long() for k in ("input_ids", "token_type_ids", "input_mask"))


def close(ours: torch.Tensor, theirs: np.ndarray) -> bool:
    assert tuple(ours.shape) == theirs.shape
    return (ours.detach().double() - torch.from_numpy(theirs).double()).abs().max().item() <= TOLERANCE


def google(folder: str, head: str = "auto"):
    """Google's modeling.py computes GELU with the tanh approximation; bert_config.json's 'gelu' is read as the
    exact GELU (as transformers reads it), so the comparison with TensorFlow's outputs takes the tanh one."""
    config = dataclasses.replace(BertConfig.from_file(FIXTURES / folder / "bert_config.json"), hidden_act="gelu_tanh")
    return load_model(FIXTURES / folder, config=config, head=head).eval()


def test_google_pretraining_checkpoint_matches_tensorflow():
    model = google("google_bert")
    assert isinstance(model, BertForPreTraining)
    out = tf_outputs("google_bert")
    with torch.no_grad():
        result = model(*feed(out))
        encoder = model.bert(*feed(out))
    assert close(encoder.last_hidden_state, out["sequence_output"]) and close(
        encoder.pooler_output, out["pooled_output"]
    )
    assert close(result.mlm_logits, out["mlm_logits"]) and close(result.nsp_logits, out["nsp_logits"])


def test_run_classifier_checkpoint_matches_tensorflow():
    model = google("google_classifier")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 3
    out = tf_outputs("google_classifier")
    with torch.no_grad():
        assert close(model(*feed(out)).logits, out["logits"])


def test_run_squad_checkpoint_matches_tensorflow():
    model = google("google_squad")
    assert type(model).__name__ == "BertForQuestionAnswering"
    out = tf_outputs("google_squad")
    with torch.no_grad():
        result = model(*feed(out))
    assert close(result.start_logits, out["start_logits"]) and close(result.end_logits, out["end_logits"])


def test_nezha_checkpoint_matches_its_tensorflow_forward():
    """Huawei's bert_config.json (use_relative_position, max_relative_position) as it stands; exact GELU in both."""
    model = load_model(FIXTURES / "nezha").eval()
    assert model.config.use_relative_positions and model.config.max_relative_position == 5
    assert not hasattr(model.bert.embeddings, "position_embeddings")
    out = tf_outputs("nezha")
    with torch.no_grad():
        result = model(*feed(out))
    assert close(result.mlm_logits, out["mlm_logits"]) and close(result.nsp_logits, out["nsp_logits"])


@pytest.mark.parametrize("given", ["bert_model.ckpt", "bert_model.ckpt.index", "checkpoint", "."])
def test_every_way_of_naming_the_checkpoint(given):
    model = BertForPreTraining.from_pretrained(FIXTURES / "google_bert" / given)
    reference = BertForPreTraining.from_pretrained(FIXTURES / "sharded")  # the same weights in two shards
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_convert_to_a_model_folder_transformers_loads(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="bertforge"):
        assert cli(["convert", str(FIXTURES / "google_bert" / "bert_model.ckpt"), str(tmp_path / "hf")]) == 0
    assert "skipped 93 optimizer/training-state variables (adam_m, adam_v, global_step)" in caplog.text
    assert "pretraining" in capsys.readouterr().out
    settings = json.loads((tmp_path / "hf" / "bertforge.json").read_text())
    assert (tmp_path / "hf" / "vocab.txt").read_bytes() == (FIXTURES / "google_bert" / "vocab.txt").read_bytes()
    assert settings["vocab_sha256"]
    ref = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ours = BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ids, types, mask = feed(tf_outputs("google_bert"))
    with torch.no_grad():
        a = ours(ids, types, mask)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask)
    assert (a.mlm_logits - b.prediction_logits).abs().max() <= TOLERANCE
    assert (a.nsp_logits - b.seq_relationship_logits).abs().max() <= TOLERANCE


def test_convert_classifier_writes_its_kind(tmp_path):
    assert cli(["convert", str(FIXTURES / "google_classifier"), str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "bertforge.json").read_text())["kind"] is not None
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["num_labels"] == 3


@pytest.mark.parametrize("folder", ["google_bert", "google_classifier", "google_squad", "nezha"])
def test_to_tf_round_trip_is_bit_identical(tmp_path, folder):
    """Every weight comes back as TensorFlow stored it (Adam slots and global_step are not weights), and a
    second round trip writes the same bytes."""
    assert cli(["convert", str(FIXTURES / folder), str(tmp_path / "tf"), "--to", "tf"]) == 0
    source, written = (
        TfCheckpoint(FIXTURES / folder / "bert_model.ckpt"),
        TfCheckpoint(tmp_path / "tf" / "bert_model.ckpt"),
    )
    weights = {n for n in source if not n.endswith(("adam_m", "adam_v")) and n != "global_step"}
    if folder == "google_squad":
        weights = {n for n in weights if not n.startswith("bert/pooler/")}  # run_squad.py never uses the pooler
    assert set(written) == weights
    for name in weights:
        assert written[name].tobytes() == source[name].tobytes(), name
    config = json.loads((tmp_path / "tf" / "bert_config.json").read_text())
    assert config == json.loads((FIXTURES / folder / "bert_config.json").read_text()) | (
        {"num_labels": 3} if folder == "google_classifier" else {}
    )
    assert cli(["convert", str(tmp_path / "tf"), str(tmp_path / "again"), "--to", "tf"]) == 0
    for f in (tmp_path / "tf").iterdir():
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name


def test_mindspore_to_tf_to_mindspore_is_bit_identical(tmp_path):
    yaml = str(ZOO / "pretrain_config.yaml")
    assert cli(["convert", str(ZOO / "bert_tiny.ckpt"), str(tmp_path / "tf"), "--to", "tf", "--config", yaml]) == 0
    assert cli(["convert", str(tmp_path / "tf"), str(tmp_path / "back.ckpt"), "--to", "mindspore"]) == 0
    original, back = (
        read_mindspore_checkpoint(ZOO / "bert_tiny.ckpt"),
        read_mindspore_checkpoint(tmp_path / "back.ckpt"),
    )
    assert len(back) == 46 and set(back) <= set(original)
    for name, value in back.items():
        assert value.dtype == original[name].dtype and value.tobytes() == original[name].tobytes(), name
    config = BertConfig.from_file(tmp_path / "tf" / "bert_config.json")
    assert config.layer_norm_eps == 1e-7  # the model zoo's epsilon survives the trip through bert_config.json


# ------------------------------------------------------------------------------------------------ refusals
def refused(capsys, args: list[str], output: Path) -> str:
    """The error: one line, the last on stderr (log lines of what was read may come before it)."""
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if "error:" in line] == [err.splitlines()[-1]]
    assert not output.exists()
    return err.splitlines()[-1]


def damaged_copy(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "google_bert", tmp_path / "src")
    return tmp_path / "src"


def test_bad_inputs_fail_in_one_line_writing_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    src = damaged_copy(tmp_path)
    index = src / "bert_model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-20])
    assert "footer magic" in refused(capsys, ["convert", str(src), str(out)], out)

    shutil.rmtree(src)
    src = damaged_copy(tmp_path)
    (src / "bert_model.ckpt.data-00000-of-00001").unlink()
    assert "missing" in refused(capsys, ["convert", str(src), str(out)], out)

    shutil.rmtree(src)
    src = damaged_copy(tmp_path)
    entry = TfCheckpoint(src / "bert_model.ckpt").entries["bert/embeddings/word_embeddings"]
    data = src / "bert_model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 100] ^= 0x40
    data.write_bytes(bytes(raw))
    err = refused(capsys, ["convert", str(src), str(out), "--to", "tf"], out)
    assert "'bert/embeddings/word_embeddings'" in err and "CRC32C" in err

    shutil.rmtree(src)
    src = damaged_copy(tmp_path)
    rewrite_entry(src / "bert_model.ckpt", "bert/pooler/dense/kernel", 1, 21)  # DT_VARIANT
    err = refused(capsys, ["convert", str(src), str(out)], out)
    assert "'bert/pooler/dense/kernel' has dtype variant, which bertforge does not read" in err


def test_other_architecture_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    err = refused(capsys, ["convert", str(FIXTURES / "other_arch"), str(out), "--config", "tiny"], out)
    assert "not a Google BERT/NEZHA checkpoint" in err and "model" in err
    tmp = tmp_path / "albert"
    from bertforge.formats.tf_checkpoint import write_tf_checkpoint

    write_tf_checkpoint(
        tmp / "model.ckpt",
        {
            "bert/embeddings/word_embeddings": np.zeros((4, 2), np.float32),
            "bert/encoder/embedding_hidden_mapping_in/kernel": np.zeros((2, 4), np.float32),
        },
    )
    err = refused(capsys, ["convert", str(tmp), str(out), "--config", "tiny"], out)
    assert "encoder variables with no known BERT/NEZHA mapping: bert/encoder/embedding_hidden_mapping_in/kernel" in err


def test_heads_and_positions_google_cannot_hold_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    err = refused(
        capsys,
        ["convert", str(FIXTURES / "google_bert"), str(out), "--to", "tf", "--head", "token-classification"],
        out,
    )
    assert "BertForTokenClassification has no head in Google's TensorFlow BERT" in err
    BertConfig.from_model_zoo_yaml(ZOO / "pretrain_config.yaml", "nezha").save(tmp_path / "nezha.json")
    args = ["convert", str(ZOO / "nezha_tiny.ckpt"), str(out), "--to", "tf", "--config", str(tmp_path / "nezha.json")]
    err = refused(capsys, args, out)
    assert "learned relative position tables" in err


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "tf"
    assert cli(["convert", str(FIXTURES / "google_bert"), str(out), "--to", "tf"]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert cli(["convert", str(FIXTURES / "google_squad"), str(out), "--to", "tf"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_unusable_state_file_is_one_line(tmp_path):
    src = damaged_copy(tmp_path)
    (src / "checkpoint").write_text("garbage\n")
    with pytest.raises(BertforgeError, match="no model_checkpoint_path line"):
        load_model(src)


def test_nvidia_pretraining_checkpoint(tmp_path):
    """NVIDIA DeepLearningExamples' `ckpt_*.pt`: the state under "model" beside the optimizer's, its
    `LinearActivation` layers named `dense_act` (intermediate, pooler, MLM transform), the decoder tied.
    Hand-built from a known model, so every weight must come back as it was."""
    source = BertForPreTraining.from_pretrained(FIXTURES / "google_bert")
    state = {}
    for name, value in source.state_dict().items():
        for layer in ("intermediate.dense.", "pooler.dense.", "transform.dense."):
            name = name.replace(layer, layer.replace("dense.", "dense_act."))
        state[name] = value.clone()
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    checkpoint = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "files": [0, "a.hdf5"], "epoch": 1}
    torch.save(checkpoint, tmp_path / "ckpt_8601.pt")
    shutil.copy(FIXTURES / "google_bert" / "bert_config.json", tmp_path)
    loaded = load_model(tmp_path / "ckpt_8601.pt")
    assert isinstance(loaded, BertForPreTraining)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), source.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_convert_records_the_casing_of_the_vocab(tmp_path):
    """A TF release says its casing only by its folder name; the model folder must not lower-case input
    for a cased model."""
    shutil.copytree(FIXTURES / "google_bert", tmp_path / "cased_L-2_H-16_A-2")
    vocab = tmp_path / "cased_L-2_H-16_A-2" / "vocab.txt"
    tokens = vocab.read_text(encoding="utf-8").split()
    vocab.write_text("".join(t + "\n" for t in tokens[:5] + [f"Word{i}" for i in range(5, 64)]), encoding="utf-8")
    assert cli(["convert", str(tmp_path / "cased_L-2_H-16_A-2"), str(tmp_path / "cased")]) == 0
    assert json.loads((tmp_path / "cased" / "bertforge.json").read_text())["do_lower_case"] is False
    assert cli(["convert", str(FIXTURES / "google_bert"), str(tmp_path / "uncased")]) == 0
    assert json.loads((tmp_path / "uncased" / "bertforge.json").read_text())["do_lower_case"] is True
