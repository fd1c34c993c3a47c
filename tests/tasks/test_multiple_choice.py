"""Multiple choice (CLUE C3, SWAG): the readers on real lines of both formats, and a model that trains,
evaluates, predicts (checked against transformers' BertForMultipleChoice on the same inputs), exports with a
choices axis and is served over HTTP — with no code of its own in `serve`, `export` or `inference`."""

import csv
import json
import random
import zipfile

import numpy as np
import pytest
import torch
import transformers

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.tasks import multiple_choice
from bertforge.tasks.multiple_choice_readers import read_multiple_choice
from tests.serve.conftest import start_server


def unzip(path, member, out):
    with zipfile.ZipFile(path) as zf:
        return zf.extract(member, out)


@pytest.mark.parametrize(("config", "split", "count"), [("mixed", "m-train", 11), ("dialog", "d-dev", None)])
def test_c3_reader_on_real_lines(sample, tmp_path, config, split, count):
    path = unzip(sample("c3-dummy") / config / "1.0.0" / "dummy_data.zip", f"dummy_data/c3-{split}.json", tmp_path)
    raw = json.load(open(path, encoding="utf-8"))
    questions = [(doc, q) for doc in raw for q in doc[1]]
    examples, report = read_multiple_choice(path)
    assert len(examples) == len(questions) == (count or len(questions)) and report.records == len(questions)
    for example, (doc, q) in zip(examples, questions):
        assert example.context == "\n".join(doc[0]) and example.question == q["question"]
        assert example.choices == q["choice"] and example.choices[example.label] == q["answer"]


def test_swag_reader_on_real_lines(sample, tmp_path):
    archive = sample("swag-dummy") / "regular" / "0.0.0" / "dummy_data.zip"
    for split, labelled in (("train", True), ("val", True), ("test", False)):
        path = unzip(archive, f"dummy_data/{split}.csv", tmp_path)
        rows = list(csv.DictReader(open(path, encoding="utf-8", newline="")))
        examples, _ = read_multiple_choice(path)
        assert len(examples) == len(rows)
        for example, row in zip(examples, rows):
            assert example.context == row["sent1"] and example.question == row["sent2"]
            assert example.choices == [row[f"ending{i}"] for i in range(4)]
            assert example.label == (int(row["label"]) if labelled else None)


def test_bad_records_name_file_and_record(tmp_path):
    bad = tmp_path / "c3.json"
    bad.write_text(json.dumps([[["背景"], [{"question": "问?", "choice": ["甲", "乙"], "answer": "丙"}], "d1"]]))
    with pytest.raises(BertforgeError, match=r"c3\.json record 1 question 1: answer \"丙\" is not one of the choices"):
        read_multiple_choice(bad)
    swag = tmp_path / "s.csv"
    swag.write_text("sent1,sent2,ending0,ending1,ending2,ending3,label\na,b,c,d,e,f,7\n")
    with pytest.raises(BertforgeError, match=r"s\.csv line 2: label '7' is not a choice index 0-3"):
        read_multiple_choice(swag)
    swag.write_text("sent1,sent2,ending0,label\na,b,c,0\n")
    with pytest.raises(BertforgeError, match=r"s\.csv: not a SWAG file: no column 'ending1'"):
        read_multiple_choice(swag)


WORDS = "red blue green small large old new warm cold bright dark quiet loud".split()


def synthetic(n: int, seed: int) -> list:
    """C3-shaped questions whose right choice is the one that repeats the context's colour (3 or 4 choices)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        colour, *others = rng.sample(WORDS[:5], 4)
        k = rng.choice([3, 4])
        choices = [f"the {c} one" for c in [colour, *others[: k - 1]]]
        rng.shuffle(choices)
        question = {"question": "which one?", "choice": choices, "answer": f"the {colour} one"}
        docs.append([[f"it was {rng.choice(WORDS[5:])} and {colour} ."], [question], f"doc-{i}"])
    return docs


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    for name, n, seed in (("train.json", 600, 1), ("dev.json", 80, 2)):
        (root / name).write_text(json.dumps(synthetic(n, seed)), encoding="utf-8")
    out = root / "out"
    assert cli(["finetune", "multiple-choice", "--quiet", "--device", "cpu", "--train", str(root / "train.json"),
                "--dev", str(root / "dev.json"), "--init", str(tiny_checkpoint), "--output", str(out), "--epochs",
                "6", "--batch-size", "16", "--learning-rate", "2e-3", "--max-seq-length", "32"]) == 0  # fmt: skip
    return root


def test_fine_tuning_learns_the_rule(trained):
    assert json.loads((trained / "out" / "eval_results.json").read_text())["accuracy"] > 0.9
    saved = json.loads((trained / "out" / "best" / "bertforge.json").read_text())
    assert saved["kind"] == "multiple-choice" and saved["task"]["format"] == "auto"


QUESTIONS = [
    {"context": "it was old and green .", "question": "which one?", "choices": ["the red one", "the green one",
                                                                                   "the blue one"]},
    {"context": "it was warm and blue .", "question": "which one?", "choices": ["the small one", "the red one",
                                                                                  "the large one", "the blue one"]},
]  # fmt: skip


def test_predictions_equal_transformers_on_the_same_inputs(trained, tmp_path):
    """`predict` (CLI, JSON lines) against transformers' BertForMultipleChoice loading the same folder."""
    best = trained / "out" / "best"
    inputs = tmp_path / "q.jsonl"
    inputs.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    assert cli(["predict", "--model", str(best), "--input", str(inputs), "--output", str(tmp_path / "p.jsonl")]) == 0
    ours = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    tokenizer = transformers.BertTokenizer(str(best / "vocab.txt"), do_lower_case=True)
    reference = transformers.BertForMultipleChoice.from_pretrained(best).eval()
    for q, got in zip(QUESTIONS, ours):
        enc = tokenizer([q["context"]] * len(q["choices"]), [f"{q['question']} {c}" for c in q["choices"]],
                        padding=True, return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            logits = reference(**{k: v[None] for k, v in enc.items()}).logits[0]
        p = torch.softmax(logits.double(), -1).numpy()
        assert got["label"] == int(p.argmax()) and got["choice"] == q["choices"][got["label"]]
        assert np.allclose(got["scores"], p, atol=1e-5) and abs(got["score"] - p.max()) <= 1e-5
    assert [got["choice"] for got in ours] == ["the green one", "the blue one"]  # the rule, learned


def test_export_has_a_choices_axis_and_matches_pytorch(trained, tmp_path):
    from bertforge.export.onnx import export_folder

    report = export_folder(trained / "out" / "best", tmp_path / "onnx")
    assert report["fp32"]["max_abs_diff"]["logits"] <= 1e-4 and report["fp32"]["agreement"] == 1.0
    torch_results = Predictor.from_pretrained(trained / "out" / "best").predict(QUESTIONS)
    onnx_results = Predictor.from_pretrained(tmp_path / "onnx", backend="onnx").predict(QUESTIONS)
    for a, b in zip(torch_results, onnx_results):
        assert a["label"] == b["label"] and np.allclose(a["scores"], b["scores"], atol=1e-4)


def test_served_over_http(trained, tmp_path):
    server = start_server(trained / "out" / "best", log=tmp_path / "serve.log")
    try:
        expected = Predictor.from_pretrained(trained / "out" / "best").predict(QUESTIONS)
        got = server.predict({"inputs": QUESTIONS})
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        assert np.allclose(got[0]["scores"], expected[0]["scores"], atol=1e-5)
        one = server.predict({"inputs": QUESTIONS[1]})
        assert one["choice"] == expected[1]["choice"]
        info = server.call("GET", "/info").body
        assert info["task"] == "multiple-choice" and info["request_example"] == multiple_choice.EXAMPLE
        reply = server.call("POST", "/predict", {"inputs": {"question": "q", "choices": ["only one"]}})
        assert reply.status == 422 and "at least two" in reply.body["error"]
    finally:
        assert server.stop() == 0
