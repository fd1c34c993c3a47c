"""Bad input to create-pretraining-data: a clear error, or a counted and reported skip — never silence."""

import os

import pytest

from bertforge.cli import main as cli
from bertforge.data.create import CreateOptions, create_pretraining_data
from bertforge.data.dataset import PretrainingDataset
from bertforge.errors import BertforgeError

GOOD = (
    "The first sentence of a document.\nAnd its second sentence, a little longer.\n\n"
    "Another document here.\nWith two lines.\n"
)


@pytest.fixture
def vocab(sample):
    return sample("vocab-en")


def run(inputs, vocab, out, **kw):
    return create_pretraining_data(inputs, vocab, out, CreateOptions(dupe_factor=2), progress=False, **kw)


def test_empty_file(tmp_path, vocab):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(BertforgeError, match=r"input files are all empty: .*empty\.txt"):
        run([tmp_path / "empty.txt"], vocab, tmp_path / "out")


def test_directory_without_text(tmp_path, vocab):
    (tmp_path / "in").mkdir()
    with pytest.raises(BertforgeError, match=r"in: directory holds no input files"):
        run([tmp_path / "in"], vocab, tmp_path / "out")
    (tmp_path / "in" / "blank.txt").write_text("\n\n   \n\n")
    with pytest.raises(BertforgeError, match="no instances were created: the input has no usable text"):
        run([tmp_path / "in"], vocab, tmp_path / "out")


def test_missing_input(tmp_path, vocab):
    with pytest.raises(BertforgeError, match=r"nope\.txt: no such file or directory"):
        run([tmp_path / "nope.txt"], vocab, tmp_path / "out")


def test_binary_garbage(tmp_path, vocab):
    (tmp_path / "garbage.bin").write_bytes(os.urandom(20000))
    with pytest.raises(BertforgeError, match=r"garbage\.bin: looks like a binary file"):
        run([tmp_path / "garbage.bin"], vocab, tmp_path / "out")


def test_invalid_utf8_lines_are_skipped_and_reported(tmp_path, vocab, capsys):
    (tmp_path / "mixed.txt").write_bytes(GOOD.encode() + b"caf\xe9 au lait\n" + GOOD.encode())
    report = run([tmp_path / "mixed.txt"], vocab, tmp_path / "out")
    assert report.read.invalid_utf8 == 1 and report.instances > 0
    assert "mixed.txt:6: invalid UTF-8" in report.summary()
    # the command line prints the same report
    assert (
        cli(
            [
                "create-pretraining-data",
                "--input",
                str(tmp_path / "mixed.txt"),
                "--vocab",
                str(vocab),
                "--output",
                str(tmp_path / "cli"),
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "skipped 1 lines of invalid UTF-8" in capsys.readouterr().out


def test_a_line_of_one_megabyte_is_skipped_and_reported(tmp_path, vocab):
    (tmp_path / "long.txt").write_text(GOOD + "word " * 200_000 + "\n\n" + GOOD)
    report = run([tmp_path / "long.txt"], vocab, tmp_path / "out")
    assert report.read.too_long == 1 and report.instances > 0
    assert "long.txt:6: line of 999999 characters" in report.summary()


@pytest.mark.parametrize("token", ["[CLS]", "[SEP]", "[MASK]", "[UNK]"])
def test_vocab_missing_a_special_token(tmp_path, vocab, token):
    lines = [t for t in vocab.read_text(encoding="utf-8").split("\n") if t != token]
    (tmp_path / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "in.txt").write_text(GOOD)
    expected = "vocab has no \\[UNK\\]" if token == "[UNK]" else f"vocab lacks .*\\{token[:-1]}\\]"
    with pytest.raises(BertforgeError, match=expected):
        run([tmp_path / "in.txt"], tmp_path / "vocab.txt", tmp_path / "out")


def test_never_overwrites_without_being_asked(tmp_path, vocab):
    (tmp_path / "in.txt").write_text(GOOD)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("user data")
    with pytest.raises(BertforgeError, match="is not empty"):
        run([tmp_path / "in.txt"], vocab, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "user data"
    run([tmp_path / "in.txt"], vocab, tmp_path / "fresh")
    run([tmp_path / "in.txt"], vocab, tmp_path / "fresh", overwrite=True)
    assert len(PretrainingDataset(tmp_path / "fresh")) > 0


def test_dataset_rejects_another_vocab(tmp_path, vocab, sample):
    (tmp_path / "in.txt").write_text(GOOD)
    run([tmp_path / "in.txt"], vocab, tmp_path / "out")
    dataset = PretrainingDataset(tmp_path / "out")
    dataset.check_vocab(30522, vocab)
    with pytest.raises(BertforgeError, match="different vocab"):
        dataset.check_vocab(30522, sample("vocab-zh"))
    with pytest.raises(BertforgeError, match="model's vocab_size is 21128"):
        dataset.check_vocab(21128)


def test_cli_errors_are_one_clean_line(tmp_path, vocab, capsys):
    code = cli(
        [
            "create-pretraining-data",
            "--input",
            str(tmp_path / "none.txt"),
            "--vocab",
            str(vocab),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "none.txt: no such file or directory" in err
