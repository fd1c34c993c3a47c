"""Run configs: every setting's range checked when read, errors naming where the value came from."""

import copy
import dataclasses
import re
from pathlib import Path

import pytest

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.training.config import load_config, resume_changes

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"


@pytest.mark.parametrize(
    "override,expected",
    [
        ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
        ("train.train_steps=-5", "train.train_steps must be -1 or an integer >= 1, got -5"),
        ("train.train_steps=0", "train.train_steps must be -1 or an integer >= 1, got 0"),
        ("train.epochs=-1", "train.epochs must be an integer >= 1, got -1"),
        ("train.precision=fp8", "train.precision must be one of fp32, bf16, fp16, got 'fp8'"),
        ("train.seed=-1", "train.seed must be an integer >= 0, got -1"),
        ("optimizer.learning_rate=nan", r"optimizer.learning_rate must be a number >= 0, got nan \(not a finite"),
        ("optimizer.beta2=1.0", r"optimizer.beta2 must be a number in \[0, 1\), got 1.0"),
        ("model.vocab_size=abc", r"model.vocab_size must be an integer >= 1, got 'abc' \(a string\)"),
        ("model.num_attention_heads=0", "model.num_attention_heads must be an integer >= 1, got 0"),
        ("model.use_relative_positions=maybe", "model.use_relative_positions must be true or false, got 'maybe'"),
        ("model.hiden_size=64", "unknown config key 'model.hiden_size'; did you mean 'model.hidden_size'"),
        ("optimizer.learnin_rate=1e-4", "unknown config key 'optimizer.learnin_rate'; did you mean 'optimizer.lea"),
        (
            "train.batch_size=abc",
            r"Value 'abc' of type 'str' could not be converted to Integer \(key train.batch_size\)",
        ),
    ],
)
def test_a_bad_command_line_value_is_reported_as_the_command_lines(override, expected):
    with pytest.raises(BertforgeError, match=f"^command line: {expected}"):
        load_config(TINY, [override])


def test_a_bad_value_in_the_file_is_reported_as_the_files(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: 0\nmodel:\n  hidden_size: 100\n")
    with pytest.raises(BertforgeError, match=re.escape(f"{tmp_path / 'c.yaml'}: train.batch_size must be")):
        load_config(tmp_path / "c.yaml")
    # the command line completes the file: only the result has to be valid
    config = load_config(tmp_path / "c.yaml", ["train.batch_size=4", "model.num_attention_heads=4"])
    assert (config.train.batch_size, config.bert_config().head_dim) == (4, 25)
    with pytest.raises(BertforgeError, match="hidden_size 100 is not a multiple of num_attention_heads 12"):
        load_config(tmp_path / "c.yaml", ["train.batch_size=4"])
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    with pytest.raises(BertforgeError, match=re.escape(f"{tmp_path / 'bad.yaml'}: ")):
        load_config(tmp_path / "bad.yaml")


def test_minus_one_means_use_epochs_and_shipped_configs_load():
    assert load_config(TINY, ["train.train_steps=-1"]).train.train_steps == -1
    for path in sorted((ROOT / "configs" / "pretrain").glob("*.yaml")):
        load_config(path).bert_config()
    from bertforge.training.finetune import config_class

    load_config(ROOT / "configs" / "finetune" / "classification.yaml", schema_class=config_class("classification"))


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--batch-size", "0"], "command line: train.batch_size must be an integer >= 1, got 0"),
        (["--train-steps", "-5"], "command line: train.train_steps must be -1 or an integer >= 1, got -5"),
        (["--model.num_attention_heads", "0"], "command line: model.num_attention_heads must be an integer >= 1"),
        (["--optimizer.learnin_rate", "1e-4"], "command line: unknown config key 'optimizer.learnin_rate'"),
    ],
)
def test_pretrain_cli_reports_bad_settings_in_one_line_before_anything_is_written(tmp_path, capsys, flags, expected):
    code = cli(["pretrain", "--config", str(TINY), "--data", str(tmp_path), "--output", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--epochs", "-2")])
def test_finetune_cli_checks_the_same_ranges(tmp_path, capsys, flag, value):
    code = cli(["finetune", "classification", "--output", str(tmp_path / "out"), "--train", "t.csv", flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "command line: train." in err and "must be an integer >= 1" in err
    assert not (tmp_path / "out").exists()


def test_a_dotted_key_takes_the_next_token_as_its_value_unless_that_is_a_flag():
    from bertforge.cli import _joined_dotted
    from bertforge.cli.overrides import dotted_overrides

    assert _joined_dotted(["--task.crf", "true", "some text"]) == ["--task.crf=true", "some text"]
    assert _joined_dotted(["--task.crf", "--epochs", "3"]) == ["--task.crf", "--epochs", "3"]
    assert dotted_overrides(["--task.crf=true"]) == ["task.crf=true"]
    with pytest.raises(BertforgeError, match="--task.crf needs a value"):
        dotted_overrides(["--task.crf"])
    with pytest.raises(BertforgeError, match="unrecognized argument 'text'"):
        dotted_overrides(["text"])


# What docs/failure-modes.md (`--resume`) says a resumed run may change: checkpoint and log frequency,
# evaluation frequency, device and loader workers. Written out here, not imported: the test is the manual's.
MAY_CHANGE_ON_RESUME = {
    "train.save_checkpoint_steps",
    "train.save_checkpoint_num",
    "train.log_steps",
    "train.eval_steps",
    "train.device",
    "data.num_workers",
}
OTHER_CHOICES = {"hidden_act": ["gelu_tanh"], "relative_position_type": ["learned"], "precision": ["bf16"],
                 "device": ["auto", "cpu"], "name": ["lamb", "adamw"], "clip_mode": ["per_tensor"],
                 "id2label": [{0: "A", 1: "B"}], "classifier_dropout": [0.2], "init_checkpoint": ["elsewhere"],
                 "path": ["other-data"]}  # fmt: skip


def _other(name: str, value):
    """A valid value other than `value` for the setting `name`."""
    if name in OTHER_CHOICES:
        return next(choice for choice in OTHER_CHOICES[name] if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value > 0 else value + 2
    if isinstance(value, float):
        return value / 2 if value else 0.5
    raise AssertionError(f"no other value for {name}={value!r}")


def test_resume_refuses_every_setting_but_the_documented_ones():
    """Each setting of the run changed alone: exactly the documented ones pass, every other is named."""
    base = load_config(TINY)
    flat = {f"model.{k}": v for k, v in base.bert_config().to_dict().items()}
    flat |= {f"{s}.{f.name}": getattr(getattr(base, s), f.name) for s in ("train", "optimizer", "loss_scale", "data")
             for f in dataclasses.fields(getattr(base, s))}  # fmt: skip
    assert MAY_CHANGE_ON_RESUME < flat.keys() and len(flat) > 50
    allowed = []
    for key, value in flat.items():
        section, name = key.split(".")
        new = copy.deepcopy(base)
        if section == "model":
            new.model[name] = _other(name, value)
        else:
            setattr(getattr(new, section), name, _other(name, value))
        changes = resume_changes(base, new)
        if not changes:
            allowed.append(key)
        else:
            assert changes == [f"{key}: {value!r} -> {_other(name, value)!r}"], key
    assert sorted(allowed) == sorted(MAY_CHANGE_ON_RESUME)
