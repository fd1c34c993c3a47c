"""A new task plugs in through the registry alone: a toy "length bucket" classifier defined only here trains,
evaluates, predicts, exports to ONNX and is served by a real `bertforge serve` process (which finds it as an
entry point, as a task from another package would be found) — with no edit anywhere else."""

import json
import os
from pathlib import Path

import pytest
import torch

from bertforge import tasks
from bertforge.cli import main as cli
from bertforge.model_folder import ModelSettings
from bertforge.modeling import BertForSequenceClassification
from bertforge.tasks import classification, get_task
from bertforge.tasks.classification_readers import Example
from bertforge.tasks.task import Task
from bertforge.training.config import load_config
from bertforge.training.finetune import config_class
from tests.polarity import sentences


def read_lengths(path, tc):  # one sentence per line; the label is its length bucket
    lines = open(path, encoding="utf-8").read().splitlines()
    return [Example(t, None, "long" if len(t.split()) > 8 else "short", str(i), f"{path} line {i + 1}")
            for i, t in enumerate(lines)]  # fmt: skip


LENGTH = Task(
    kind="length-bucket",
    config=classification.ClassificationConfig,
    head=BertForSequenceClassification,
    default_method="accuracy",
    methods={"accuracy": "accuracy"},
    read=read_lengths,
    prepare=lambda tc, train, init: ModelSettings("length-bucket", labels=["long", "short"], task=tc),
    model_overrides=classification.model_overrides,
    example=classification.example,
    featurize=classification.featurize,
    loss_count=lambda batch: torch.tensor(float(len(batch["labels"]))),
    postprocess=classification.postprocess,
    score=classification.score,
    record=classification.record,
    serving=classification.SERVING,
)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, LENGTH.kind, LENGTH)
    return LENGTH


def plugin_path(root: Path) -> str:
    """A folder that installs this module's LENGTH as the task plugin "length-bucket" (an entry point in the
    group bertforge.tasks), for a child process's PYTHONPATH (with the repository, where `tests` lives)."""
    info = root / "length_bucket_task-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: length-bucket-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bertforge.tasks]\nlength-bucket = tests.tasks.test_registry:LENGTH\n")
    return os.pathsep.join([str(root), str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])


def test_a_task_defined_in_a_test_trains_evaluates_predicts_exports_and_is_served(registered, tiny_checkpoint,
                                                                                   tmp_path):  # fmt: skip
    from bertforge.export.onnx import export_folder
    from tests.serve.conftest import start_server

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

    report = export_folder(out / "best", tmp_path / "onnx")
    assert report["task"] == "length-bucket" and report["fp32"]["agreement"] == 1.0

    server = start_server(out / "best", log=tmp_path / "serve.log", env={"PYTHONPATH": plugin_path(tmp_path / "p")})
    try:
        assert [r[0]["label"] for r in server.predict({"inputs": [[t] for t in texts]})] == ["short", "long"]
        info = server.call("GET", "/info").body
        assert info["task"] == "length-bucket" and info["labels"] == ["long", "short"]
    finally:
        assert server.stop() == 0


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
