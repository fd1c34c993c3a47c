"""Fine-tuning end to end on a tiny model: train -> eval -> predict, labels kept, seeds, regression."""

import json
import random

import numpy as np

from bertforge.cli import main as cli
from bertforge.modeling import BertForSequenceClassification
from bertforge.training.metrics import read_metrics
from tests.polarity import BAD, GOOD, sentences, write_csv


def run(*args):
    return cli(["finetune", "classification", "--quiet", "--device", "cpu", *map(str, args)])


def test_train_eval_predict_end_to_end(tiny_checkpoint, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentences(400, 1))
    dev = write_csv(tmp_path / "dev.csv", sentences(100, 2))
    test_rows = sentences(30, 3)
    test = write_csv(tmp_path / "test.csv", [(t,) for t, _ in test_rows], header=("text",))
    out = tmp_path / "out"
    code = run(
        "--train",
        train,
        "--dev",
        dev,
        "--test",
        test,
        "--init",
        tiny_checkpoint,
        "--output",
        out,
        "--epochs",
        4,
        "--batch-size",
        16,
        "--learning-rate",
        2e-3,
        "--do-predict",
    )
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["accuracy"] > 0.9, results
    assert {p.name for p in (out / "best").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "bertforge.json",
        "vocab.txt",
    }
    model = BertForSequenceClassification.from_pretrained(out / "best")
    assert model.config.id2label == {0: "neg", 1: "pos"}
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["guid"] for line in lines] == [str(i) for i in range(30)]  # input order
    predicted = [line["label"] for line in lines]
    gold = [label for _, label in test_rows]
    assert np.mean([p == g for p, g in zip(predicted, gold)]) > 0.9
    assert all(abs(sum(line["probabilities"].values()) - 1) < 1e-5 for line in lines)

    # the kept model predicts the same without training, with the label list saved beside it
    again = tmp_path / "again"
    assert (
        run("--init", out / "best", "--dev", dev, "--test", test, "--output", again, "--no-do-train", "--do-predict")
        == 0
    )
    assert (again / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()
    assert json.loads((again / "eval_results.json").read_text())["accuracy"] == results["accuracy"]


def test_unknown_dev_label_and_existing_output_are_clear_errors(tiny_checkpoint, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", sentences(40, 1))
    dev = write_csv(tmp_path / "dev.csv", [("the plot was fine", "neutral")])
    assert run("--train", train, "--dev", dev, "--init", tiny_checkpoint, "--output", tmp_path / "o") == 2
    assert "dev.csv line 2: label 'neutral' is not in" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    assert run("--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", tmp_path / "taken") == 2
    assert "is not empty" in capsys.readouterr().err


def test_several_seeds_report_mean_and_std(tiny_checkpoint, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentences(64, 1))
    dev = write_csv(tmp_path / "dev.csv", sentences(32, 2))
    assert (
        run(
            "--train",
            train,
            "--dev",
            dev,
            "--init",
            tiny_checkpoint,
            "--output",
            tmp_path / "o",
            "--epochs",
            1,
            "--batch-size",
            16,
            "--seeds",
            "1,2",
        )
        == 0
    )
    results = json.loads((tmp_path / "o" / "eval_results.json").read_text())
    assert results["seeds"] == [1, 2] and len(results["accuracy"]["values"]) == 2
    assert (tmp_path / "o" / "seed-1" / "best").is_dir() and (tmp_path / "o" / "seed-2" / "best").is_dir()


def test_regression(tiny_checkpoint, tmp_path):
    rng = random.Random(0)
    rows = [
        (f"the film was {w}", float(GOOD.index(w) if w in GOOD else -BAD.index(w)))
        for w in (rng.choice(GOOD + BAD) for _ in range(80))
    ]
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    assert (
        run(
            "--train",
            train,
            "--dev",
            train,
            "--init",
            tiny_checkpoint,
            "--output",
            tmp_path / "o",
            "--epochs",
            2,
            "--batch-size",
            16,
            "--task.regression",
            "true",
            "--task.label",
            "score",
            "--assessment-method",
            "spearman_correlation",
            "--learning-rate",
            1e-3,
            "--train.eval_steps",
            2,
        )
        == 0
    )
    results = json.loads((tmp_path / "o" / "eval_results.json").read_text())
    assert set(results) >= {"spearman", "pearson"}
    evaluated = [r["step"] for r in read_metrics(tmp_path / "o") if "eval_spearman" in r]
    assert evaluated[:3] == [2, 4, 5]  # every 2 steps (--train.eval_steps) and at each epoch's end (5 steps)
    assert BertForSequenceClassification.from_pretrained(tmp_path / "o" / "best").config.num_labels == 1
