"""A new task plugs in through the registry alone: a toy "length bucket" classifier defined only here trains,
evaluates and predicts end to end through the same recipe, model folder and `predict` as every task."""

import json
from pathlib import Path

import pytest
import torch

from bertforge import tasks
from bertforge.cli import main as cli
from bertforge.modeling import BertForSequenceClassification
from bertforge.tasks import classification, get_task
from bertforge.tasks.folder import ModelSettings
from bertforge.tasks.readers import Example
from bertforge.tasks.task import Task, TaskConfig
from bertforge.training.config import load_config
from bertforge.training.finetune import config_class
from tests.polarity import sentences


def read_lengths(path, tc):  # one sentence per line; the label is its length bucket
    lines = open(path, encoding="utf-8").read().splitlines()
    return [Example(t, None, "long" if len(t.split()) > 8 else "short", str(i), f"{path} line {i + 1}")
            for i, t in enumerate(lines)]  # fmt: skip


LENGTH = Task(
    kind="length-bucket",
    config=TaskConfig,
    head=BertForSequenceClassification,
    default_method="accuracy",
    methods={"accuracy": "accuracy"},
    read=read_lengths,
    prepare=lambda tc, train, init: ModelSettings("length-bucket", labels=["long", "short"]),
    model_overrides=classification.model_overrides,
    example=classification.example,
    featurize=classification.featurize,
    loss_count=lambda batch: torch.tensor(float(len(batch["labels"]))),
    postprocess=classification.postprocess,
    score=classification.score,
    record=classification.record,
)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, LENGTH.kind, LENGTH)
    return LENGTH


def test_a_task_defined_in_a_test_trains_evaluates_and_predicts(registered, tiny_checkpoint, tmp_path):
    for name, n, seed in (("train.txt", 400, 1), ("dev.txt", 80, 2)):
        (tmp_path / name).write_text("".join(t + "\n" for t, _ in sentences(n, seed)), encoding="utf-8")
    out = tmp_path / "out"
    code = cli(["finetune", "length-bucket", "--quiet", "--device", "cpu", "--train", str(tmp_path / "train.txt"),
                "--dev", str(tmp_path / "dev.txt"), "--init", str(tiny_checkpoint), "--output", str(out),
                "--epochs", "4", "--batch-size", "16", "--learning-rate", "2e-3", "--do-predict"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "eval_results.json").read_text())["accuracy"] > 0.9
    assert json.loads((out / "best" / "bertforge.json").read_text())["kind"] == "length-bucket"
    predicted = [json.loads(x)["label"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predicted) == 80

    texts = ["the film was good", "the film was good and the plot and the music and the cast and the ending too"]
    assert cli(["predict", "--model", str(out / "best"), *texts, "--output", str(tmp_path / "p.jsonl")]) == 0
    assert [json.loads(x)["label"] for x in (tmp_path / "p.jsonl").read_text().splitlines()] == ["short", "long"]


def test_unknown_kinds_are_named(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit):
        cli(["finetune", "no-such-task", "--output", "x"])
    assert "invalid choice: 'no-such-task'" in capsys.readouterr().err
    with pytest.raises(Exception, match="no task 'nope'; known tasks: classification"):
        tasks.get_task("nope")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs" / "finetune").glob("*.yaml")))
def test_every_bundled_finetune_config_loads_for_its_task(path):
    config = load_config(path, [], config_class(path.stem))
    assert config.kind == path.stem and isinstance(config.task, get_task(path.stem).config)
