"""Fine-tuning end to end on a tiny model: train -> eval -> predict, labels kept, seeds, regression."""

import json
import random
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from bertforge.cli import main as cli
from bertforge.modeling import BertForSequenceClassification
from bertforge.tokenization import FullTokenizer
from bertforge.training.metrics_log import read_metrics
from tests.polarity import BAD, GOOD, sentences, write_csv


def run(*args):
    return cli(["finetune", "classification", "--quiet", "--device", "cpu", *map(str, args)])


def model_outputs(folder: Path, texts: list[str]) -> tuple[torch.Tensor, dict[int, str] | None]:
    """Logits (N, num_labels) of the model kept in `folder`, one text at a time straight through the model (no
    Predictor, no batching), and its id -> label map."""
    tokenizer = FullTokenizer(folder / "vocab.txt")
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = [
            model(torch.tensor([e.input_ids]), torch.tensor([e.token_type_ids])).logits[0]
            for e in tokenizer.encode_batch(texts, None, 128).encodings
        ]
    return torch.stack(logits), model.config.id2label


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


def regression_rows() -> list[tuple[str, float]]:
    rng = random.Random(0)
    return [
        (f"the film was {w}", float(GOOD.index(w) if w in GOOD else -BAD.index(w)))
        for w in (rng.choice(GOOD + BAD) for _ in range(80))
    ]


def scipy_correlations(folder: Path, rows: list[tuple[str, float]]) -> dict[str, float]:
    """Spearman and Pearson (scipy) of the scores the model kept in `folder` gives `rows`, against their gold.
    (float32 scores of one text at a time differ from batched ones in the 6th digit: compare to 1e-4.)"""
    logits, id2label = model_outputs(folder, [text for text, _ in rows])
    assert logits.shape == (len(rows), 1) and id2label is None
    scores, gold = logits[:, 0].double().numpy(), [score for _, score in rows]
    return {"spearman": spearmanr(scores, gold)[0], "pearson": pearsonr(scores, gold)[0]}


REGRESSION = ["--task.regression", "true", "--task.label", "score", "--assessment-method", "spearman_correlation",
              "--learning-rate", 1e-3, "--batch-size", 16]  # fmt: skip


def test_several_seeds_report_mean_and_std(tiny_checkpoint, tmp_path):
    """Each seed's scores are those of its kept model (scipy), and the summary is their mean and sample standard
    deviation (statistics). Regression: continuous scores, so the two seeds' values differ."""
    rows = regression_rows()
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    out = tmp_path / "o"
    assert run("--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out, "--epochs", 1,
               "--seeds", "1,2", *REGRESSION) == 0  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    per_seed = [json.loads((out / f"seed-{s}" / "eval_results.json").read_text()) for s in (1, 2)]
    for seed, scores in zip((1, 2), per_seed):
        expected = scipy_correlations(out / f"seed-{seed}" / "best", rows)
        assert {k: scores[k] for k in expected} == pytest.approx(expected, abs=1e-4), seed
    assert results.pop("seeds") == [1, 2] and set(results) == {"spearman", "pearson"}
    for key, summary in results.items():
        values = [r[key] for r in per_seed]
        assert values[0] != values[1], key  # so that a population std, or a mean of one seed, would show
        assert summary == {"values": values, "mean": pytest.approx(statistics.mean(values), abs=1e-12),
                           "std": pytest.approx(statistics.stdev(values), abs=1e-12)}, key  # fmt: skip


def test_regression(tiny_checkpoint, tmp_path):
    rows = regression_rows()
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    assert run("--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", tmp_path / "o", "--epochs", 2,
               "--train.eval_steps", 2, *REGRESSION) == 0  # fmt: skip
    results = json.loads((tmp_path / "o" / "eval_results.json").read_text())
    expected = scipy_correlations(tmp_path / "o" / "best", rows)
    assert {k: results[k] for k in expected} == pytest.approx(expected, abs=1e-4)
    assert abs(results["pearson"]) > 0.1  # far from 0, so that a flipped or shifted score would show
    evaluated = [r["step"] for r in read_metrics(tmp_path / "o") if "eval_spearman" in r]
    assert evaluated[:3] == [2, 4, 5]  # every 2 steps (--train.eval_steps) and at each epoch's end (5 steps)
    assert BertForSequenceClassification.from_pretrained(tmp_path / "o" / "best").config.num_labels == 1


def _write_tnews(path: Path, rows) -> Path:
    """CLUE tnews lines (English text): pos -> 102, neg -> 108; unlabelled rows get an "id" instead."""
    codes = {"pos": "102", "neg": "108"}
    lines = [{"sentence": t, "label": codes[label]} if label else {"id": 100 + i, "sentence": t}
             for i, (t, label) in enumerate(rows)]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _write_sst2(path: Path, rows) -> Path:
    """GLUE SST-2 TSV: pos -> 1, neg -> 0; the test file has an index column instead of a label."""
    codes = {"pos": "1", "neg": "0"}
    header = "sentence\tlabel\n" if rows[0][1] else "index\tsentence\n"
    body = [f"{t}\t{codes[label]}\n" if label else f"{100 + i}\t{t}\n" for i, (t, label) in enumerate(rows)]
    path.write_text(header + "".join(body))
    return path


BENCHMARKS = {  # task: writer, file suffix, labels file (name, content) in an order of its own, submission file
    "tnews": (_write_tnews, "json", ("labels.json", [{"label": "108", "label_desc": "news_edu"},
              {"label": "102", "label_desc": "news_entertainment"}, {"label": "110", "label_desc": "news_military"}]),
              "tnews_predict.json"),
    "sst2": (_write_sst2, "tsv", ("labels.txt", ["1", "0"]), "sst2.tsv"),
}  # fmt: skip


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_a_labels_file_orders_the_labels_and_the_submission_holds_the_models_predictions(
    tiny_checkpoint, tmp_path, benchmark
):
    """--labels (task.labels) fixes the model's label ids in the file's order (not the benchmark's fixed list nor
    the training labels'), and the benchmark's submission file holds, per test id, what the kept model predicts."""
    write, suffix, (labels_name, labels), submission = BENCHMARKS[benchmark]
    train = write(tmp_path / f"train.{suffix}", sentences(400, 1))
    dev = write(tmp_path / f"dev.{suffix}", sentences(40, 2))
    texts = [t for t, _ in sentences(30, 3)]
    test = write(tmp_path / f"test.{suffix}", [(t, None) for t in texts])
    labels_file = tmp_path / labels_name
    labels_file.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in labels))
    out = tmp_path / "out"
    assert run("--task", benchmark, "--train", train, "--dev", dev, "--test", test, "--labels", labels_file,
               "--init", tiny_checkpoint, "--output", out, "--epochs", 4, "--batch-size", 16, "--learning-rate",
               2e-3, "--do-predict") == 0  # fmt: skip
    logits, id2label = model_outputs(out / "best", texts)
    names = [x["label"] if isinstance(x, dict) else x for x in labels]
    assert id2label == dict(enumerate(names))
    predicted = [id2label[int(i)] for i in logits.argmax(-1)]
    assert len(set(predicted)) == 2  # both classes: a shifted or constant submission cannot pass
    if benchmark == "tnews":
        descriptions = {x["label"]: x["label_desc"] for x in labels}
        expected = [{"id": 100 + i, "label": p, "label_desc": descriptions[p]} for i, p in enumerate(predicted)]
        assert [json.loads(line) for line in (out / submission).read_text().splitlines()] == expected
    else:
        expected = "index\tprediction\n" + "".join(f"{100 + i}\t{p}\n" for i, p in enumerate(predicted))
        assert (out / submission).read_text() == expected


def test_cached_features_are_keyed_by_the_featurizing_code(tiny_checkpoint, tmp_path, monkeypatch):
    """The same file featurized again is read from the cache; a changed featurizer (its source file) or another
    setting featurizes again, so a stale cache cannot hide a featurizer change."""
    import dataclasses
    import importlib.util

    from bertforge.tasks.classification import TASK, ClassificationConfig
    from bertforge.training.finetune import featurize_cached

    monkeypatch.setenv("BERTFORGE_CACHE", str(tmp_path / "cache"))
    calls = []

    def task_with_featurizer(version: int):
        """TASK with its featurize wrapped in a module file of its own, whose text says `version`."""
        path = tmp_path / "featurizer.py"
        path.write_text(f"# version {version}\nfrom bertforge.tasks.classification import featurize as real\n\n\n"
                        "def featurize(*args):\n    CALLS.append(1)\n    return real(*args)\n")  # fmt: skip
        spec = importlib.util.spec_from_file_location(f"featurizer_{version}", path)
        module = importlib.util.module_from_spec(spec)
        module.CALLS = calls
        spec.loader.exec_module(module)
        return dataclasses.replace(TASK, featurize=module.featurize)

    train = str(write_csv(tmp_path / "train.csv", sentences(20, 1)))
    tc = ClassificationConfig(train=train)
    tokenizer = FullTokenizer(tiny_checkpoint / "vocab.txt")
    task = task_with_featurizer(1)
    examples = task.read(train, tc)
    settings = task.prepare(tc, examples, None)
    first = featurize_cached(task, examples, train, tokenizer, settings, tc)
    assert featurize_cached(task, examples, train, tokenizer, settings, tc).to_json() == first.to_json()
    assert len(calls) == 1
    task = task_with_featurizer(2)
    assert featurize_cached(task, examples, train, tokenizer, settings, tc).to_json() == first.to_json()
    assert len(calls) == 2
    short = featurize_cached(task, examples, train, tokenizer, settings, dataclasses.replace(tc, max_seq_length=8))
    assert len(calls) == 3 and max(short.lengths) == 8
