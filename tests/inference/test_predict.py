"""`Predictor` and `bertforge predict`: a kept model predicts raw text exactly as it was evaluated; folders
written by `transformers` work with their own tokenizer settings (casing kept); inputs in every format,
streamed in order; bad input is one clear line and writes nothing."""

import json
import shutil

import numpy as np
import pytest
import torch

from bertforge.cli import main as cli
from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.model_folder import SETTINGS_FILE
from tests.polarity import sentences, write_csv


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tmp_path_factory):
    """A tiny fine-tuned polarity model, with its own predictions of the dev set from `finetune --do-predict`."""
    root = tmp_path_factory.mktemp("trained")
    train = write_csv(root / "train.csv", sentences(300, 1))
    dev = write_csv(root / "dev.csv", sentences(60, 2))
    out = root / "out"
    args = ["--train", train, "--dev", dev, "--test", dev, "--init", tiny_checkpoint, "--output", out]
    args += ["--epochs", 3, "--batch-size", 16, "--learning-rate", 2e-3, "--do-predict", "--max-seq-length", 48]
    assert cli(["finetune", "classification", "--quiet", "--device", "cpu", *map(str, args)]) == 0
    return root


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_model_folder_describes_itself(trained):
    best = trained / "out" / "best"
    settings = json.loads((best / SETTINGS_FILE).read_text())
    assert settings["kind"] == "classification" and settings["labels"] == ["neg", "pos"]
    assert settings["do_lower_case"] is True and settings["max_seq_length"] == 48
    assert len(settings["vocab_sha256"]) == 64 and settings["version"]
    config = json.loads((best / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["architectures"] == [
        "BertForSequenceClassification"
    ]


def test_predict_equals_the_models_own_evaluation(trained, tmp_path):
    evaluated = read_jsonl(trained / "out" / "predictions.jsonl")  # finetune --do-predict on dev.csv
    out = tmp_path / "p.jsonl"
    assert cli(["predict", "--model", str(trained / "out" / "best"), "--input", str(trained / "dev.csv"),
                "--output", str(out), "--batch-size", "7", "--quiet"]) == 0  # fmt: skip
    predicted = read_jsonl(out)
    assert len(predicted) == len(evaluated) == 60
    assert [p["line"] for p in predicted] == list(range(2, 62))  # input order (line 1 is the header)
    assert [p["label"] for p in predicted] == [e["label"] for e in evaluated]
    for p, e in zip(predicted, evaluated):
        assert p["probabilities"].keys() == e["probabilities"].keys()
        assert max(abs(p["probabilities"][k] - e["probabilities"][k]) for k in p["probabilities"]) <= 1e-6
    gold = [label for _, label in sentences(60, 2)]
    assert np.mean([p["label"] == g for p, g in zip(predicted, gold)]) > 0.8  # it learned something

    # The Python API: HF pipeline's shape, every label sorted by score; a single text gives one result.
    predictor = Predictor.from_pretrained(trained / "out" / "best", batch_size=5)
    texts = [t for t, _ in sentences(60, 2)]
    results = predictor.predict(texts)
    assert [r[0]["label"] for r in results] == [e["label"] for e in evaluated]
    assert all(r[0]["score"] >= r[1]["score"] and {x["label"] for x in r} == {"neg", "pos"} for r in results)
    single = predictor.predict(texts[3])  # alone in its batch: no padding, same result within float noise
    assert [r["label"] for r in single] == [r["label"] for r in results[3]]
    assert [r["score"] for r in single] == pytest.approx([r["score"] for r in results[3]], abs=1e-6)


def test_input_formats_arguments_and_stdin(trained, tmp_path, capsys, monkeypatch):
    best = str(trained / "out" / "best")
    rows = sentences(5, 7)
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t, _ in rows) + "   \n", encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "review": t}) + "\n" for i, (t, _) in
                                               enumerate(rows)))  # fmt: skip
    (tmp_path / "in.tsv").write_text("label\treview\n" + "".join(f"{g}\t{t}\n" for t, g in rows))
    assert cli(["predict", "--model", best, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "a")]) == 0
    assert "skipped 1 (blank line)" in capsys.readouterr().err
    base = [r["label"] for r in read_jsonl(tmp_path / "a")]
    assert len(base) == 5
    for name in ("in.jsonl", "in.tsv"):
        out = tmp_path / (name + ".out")
        assert cli(["predict", "--model", best, "--input", str(tmp_path / name), "--text-column", "review",
                    "--output", str(out)]) == 0  # fmt: skip
        assert [r["label"] for r in read_jsonl(out)] == base, name
    assert [r["id"] for r in read_jsonl(tmp_path / "in.jsonl.out")] == list(range(5))

    capsys.readouterr()
    assert cli(["predict", "--model", best, rows[0][0], rows[1][0]]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == [rows[0][0], rows[1][0]] and [x["label"] for x in lines] == base[:2]

    monkeypatch.setattr("sys.stdin", open(tmp_path / "in.txt", encoding="utf-8"))
    assert cli(["predict", "--model", best, "--input", "-", "--quiet"]) == 0
    assert [json.loads(x)["label"] for x in capsys.readouterr().out.splitlines()] == base


def test_format_and_text_b_column_flags(trained, tmp_path):
    """--format tsv reads a file whose name says nothing (by its name it is text: one input per line, the header
    too), and --text-b-column makes each row a pair: each record's scores are those of the pair, not of the
    first text alone."""
    best = trained / "out" / "best"
    rows = [(a, b) for (a, _), (b, _) in zip(sentences(3, 8), sentences(3, 9))]
    data = tmp_path / "pairs.dat"
    data.write_text("first\tsecond\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli(["predict", "--model", str(best), "--input", str(data), "--format", "tsv", "--text-column", "first",
                "--text-b-column", "second", "--output", str(out), "--quiet"]) == 0  # fmt: skip
    got = read_jsonl(out)
    assert [r["line"] for r in got] == [2, 3, 4]  # the header is no input
    import transformers  # the oracle: transformers' own model and pair encoding on the same folder

    model = transformers.BertForSequenceClassification.from_pretrained(best).eval()
    tokenizer = transformers.BertTokenizer(str(best / "vocab.txt"), do_lower_case=True)
    for record, (a, b) in zip(got, rows, strict=True):
        with torch.no_grad():
            probs = torch.softmax(model(**tokenizer(a, b, return_tensors="pt")).logits[0].double(), -1)
        expected = {model.config.id2label[i]: float(p) for i, p in enumerate(probs)}
        assert record["probabilities"] == pytest.approx(expected, abs=1e-5), (a, b)


def test_truncation_is_reported_not_silent(trained, tmp_path, capsys):
    long = " ".join(["the film was good"] * 40)
    assert cli(["predict", "--model", str(trained / "out" / "best"), long, "short and good",
                "--max-seq-length", "16"]) == 0  # fmt: skip
    assert "1 of 2 inputs truncated to 16 tokens" in capsys.readouterr().err


def test_bad_input_is_one_line_naming_the_file_and_writes_nothing(trained, tmp_path, capsys):
    best = trained / "out" / "best"
    out = tmp_path / "out.jsonl"

    def fails(*args, expect):
        assert cli(["predict", "--quiet", *map(str, args), "--output", str(out)]) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # warnings may come before; the error is one line
        assert last.startswith("bertforge predict: error: ") and expect in last, last
        assert not out.exists()

    (tmp_path / "empty.txt").write_text("")
    fails("--model", best, "--input", tmp_path / "empty.txt", expect="empty.txt: file is empty")
    (tmp_path / "bad.txt").write_bytes(b"the film was good\nthe plot was \xff\xfe bad\n")
    fails("--model", best, "--input", tmp_path / "bad.txt", expect="bad.txt line 2: not valid UTF-8")
    assert cli(["predict", "--model", str(best), "--input", str(tmp_path / "bad.txt"), "--skip-bad-lines",
                "--output", str(out)]) == 0  # fmt: skip
    assert "skipped 1 (not UTF-8), e.g. " in capsys.readouterr().err and len(read_jsonl(out)) == 1
    out.unlink()

    no_weights = tmp_path / "no-weights"
    shutil.copytree(best, no_weights)
    (no_weights / "model.safetensors").unlink()
    fails("--model", no_weights, "the film was good", expect=f"{no_weights}: no weights found")

    wrong_vocab = tmp_path / "wrong-vocab"
    shutil.copytree(best, wrong_vocab)
    (wrong_vocab / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    fails("--model", wrong_vocab, "the film", expect=f"{wrong_vocab / 'vocab.txt'}: not the vocab this model")
    (wrong_vocab / SETTINGS_FILE).unlink()  # a transformers-style folder: the size check still catches it
    fails("--model", wrong_vocab, "the film", expect="5 tokens, but the model in")

    swapped = tmp_path / "swapped"
    shutil.copytree(best, swapped)
    settings = json.loads((swapped / SETTINGS_FILE).read_text())
    (swapped / SETTINGS_FILE).write_text(json.dumps(settings | {"labels": ["pos", "neg"]}))
    fails("--model", swapped, "the film", expect="disagree")

    (tmp_path / "cols.csv").write_text("review,label\nthe film was good,pos\n")
    fails("--model", best, "--input", tmp_path / "cols.csv", expect="cols.csv line 2: no text in field 'text'")
    out.write_text("mine")
    assert cli(["predict", "--model", str(best), "x", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"


def transformers_folder(sample, root, do_lower_case):
    """A tiny classifier saved by `transformers` itself (weights, config, tokenizer files; no bertforge.json)."""
    import transformers

    torch.manual_seed(3)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=3, id2label={0: "sad", 1: "neutral", 2: "happy"}, label2id={"sad": 0, "neutral": 1, "happy": 2},
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(root)
    tokenizer = transformers.BertTokenizerFast(str(sample("vocab-en")), do_lower_case=do_lower_case)
    tokenizer.save_pretrained(root)
    return model, tokenizer


TEXTS = [
    "Hello World, this is GREAT!",
    "the plot was dull",
    "Paris and Berlin",
    "An ÉCOLE in Zürich?",
    "A long one: " + "the plot was dull and " * 16 + "slow and long.",  # 90 tokens: padded above 64, to 96
]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_transformers_folder_predicts_like_transformers(sample, tmp_path, do_lower_case, caplog):
    model, tokenizer = transformers_folder(sample, tmp_path, do_lower_case)
    with torch.no_grad():
        enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        expected = torch.softmax(model(**enc).logits, -1).numpy()
    predictor = Predictor.from_pretrained(tmp_path)
    assert "settings inferred" in caplog.text and predictor.settings.do_lower_case is do_lower_case
    results = predictor.predict(TEXTS)
    for result, row in zip(results, expected):
        got = {r["label"]: r["score"] for r in result}
        assert result[0]["label"] == ["sad", "neutral", "happy"][int(row.argmax())]
        assert max(abs(got[name] - p) for name, p in zip(["sad", "neutral", "happy"], row)) <= 1e-6
    if not do_lower_case:  # the casing matters to this model: lower-casing would change its outputs
        lowered = Predictor.from_pretrained(tmp_path)
        lowered.tokenizer = type(lowered.tokenizer)(lowered.tokenizer.vocab_file, do_lower_case=True)
        assert lowered.predict(TEXTS[0]) != results[0]


def test_convert_writes_a_self_describing_folder(sample, tmp_path):
    transformers_folder(sample, tmp_path / "hf", do_lower_case=False)
    assert cli(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    settings = json.loads((tmp_path / "ours" / SETTINGS_FILE).read_text())
    assert settings["kind"] == "classification" and settings["do_lower_case"] is False
    assert settings["labels"] == ["sad", "neutral", "happy"]
    a = Predictor.from_pretrained(tmp_path / "hf").predict(TEXTS)
    b = Predictor.from_pretrained(tmp_path / "ours").predict(TEXTS)
    assert a == b


def test_convert_never_writes_through_a_linked_vocab(sample, tmp_path):
    transformers_folder(sample, tmp_path / "hf", do_lower_case=True)
    assert cli(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    (tmp_path / "ours" / "vocab.txt").unlink()
    (tmp_path / "ours" / "vocab.txt").symlink_to(precious)
    assert cli(["convert", str(tmp_path / "hf"), str(tmp_path / "ours"), "--overwrite"]) == 0
    assert precious.read_text() == "mine" and not (tmp_path / "ours" / "vocab.txt").is_symlink()


def test_a_pretrained_encoder_is_not_a_predictor(tiny_checkpoint):
    with pytest.raises(BertforgeError, match="fine-tune it first"):
        Predictor.from_pretrained(tiny_checkpoint)


def test_every_blank_line_of_a_text_input_is_counted(tmp_path):
    from bertforge.inference.files import InputReport, read_inputs

    def read(content: bytes, **kwargs):
        (tmp_path / "in.txt").write_bytes(content)
        report = InputReport("in.txt")
        return [n for n, _ in read_inputs(str(tmp_path / "in.txt"), report, **kwargs)], report.summary()

    # 4 lines, 2 of them blank (one empty, one of spaces): counted by hand
    assert read(b"good\n\n   \nbad\n") == ([1, 4], "in.txt: 2 inputs from 4 records; skipped 2 (blank line), e.g. "
                                                 f"{tmp_path / 'in.txt'} line 2")  # fmt: skip
    numbers, summary = read(b"good\n\xff\n\nbad\n", skip_bad_lines=True)  # an invalid line is not also blank
    assert numbers == [1, 4] and summary.startswith("in.txt: 2 inputs from 4 records; skipped 1 (not UTF-8)")
    assert summary.endswith(f"; skipped 1 (blank line), e.g. {tmp_path / 'in.txt'} line 3")
    with pytest.raises(BertforgeError, match="in.txt: no inputs; expected one input per line"):
        read(b"\n  \n\n")


def test_an_output_that_is_not_a_regular_file_is_never_replaced(trained, tmp_path, capsys):
    import os

    best = str(trained / "out" / "best")
    (tmp_path / "mine.txt").write_text("mine")
    (tmp_path / "to-mine").symlink_to(tmp_path / "mine.txt")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # a special file, as /dev/full is
    for name, overwrite, expect in (
        ("dangling", [], "is a symbolic link (to"),
        ("to-mine", ["--overwrite"], "is a symbolic link (to"),
        ("dir", ["--overwrite"], "exists and is a directory, not a regular file"),
        ("fifo", ["--overwrite"], "exists and is a named pipe, not a regular file"),
    ):
        assert cli(["predict", "--model", best, "good", "--output", str(tmp_path / name), *overwrite]) == 2, name
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        assert err.splitlines()[-1].startswith(f"bertforge predict: error: {tmp_path / name} {expect}"), err
    assert (tmp_path / "dangling").is_symlink() and not (tmp_path / "nowhere").exists()
    assert (tmp_path / "to-mine").is_symlink() and (tmp_path / "mine.txt").read_text() == "mine"
    assert list((tmp_path / "dir").iterdir()) == [] and (tmp_path / "fifo").is_fifo()


def test_a_full_or_closed_standard_output_is_one_line(trained, tmp_path, capsys, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "in.txt").write_text("the film was good\n" * 2000)  # more than a buffer of output
    env = {"PYTHONPATH": f"{root / 'src'}:{root}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    best = str(trained / "out" / "best")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "bertforge", "predict", "--model", best, "--input", str(tmp_path / "in.txt"),
             "--quiet"], stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=300,
        )  # fmt: skip
    expect = "bertforge predict: error: no space left while writing standard output\n"
    assert done.returncode == 2 and done.stderr == expect, done.stderr

    class Closed:  # a pipe whose reader has gone (`bertforge predict ... | head -1`)
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr("sys.stdout", Closed())
    assert cli(["predict", "--model", best, "good", "bad"]) == 2
    expect = "bertforge predict: error: cannot write standard output: Broken pipe (EPIPE)"
    assert capsys.readouterr().err.splitlines()[-1] == expect
