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


def test_whitespace_only_input_leaves_no_dataset_behind(tmp_path, vocab, capsys):
    (tmp_path / "blank.txt").write_text("\n  \n\t\n\n")
    args = ["create-pretraining-data", "--input", str(tmp_path / "blank.txt"), "--vocab", str(vocab)]
    assert cli([*args, "--output", str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 2
    assert "no instances were created" in capsys.readouterr().err
    assert not [p.name for p in (tmp_path / "out").iterdir()]  # no schema.json, shards or params.json
    assert cli(["inspect", str(tmp_path / "out")]) == 2
    assert "no schema.json, not a bertforge pretraining dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupted_run_resumes_and_ctrl_c_is_one_line_with_exit_130(tmp_path, vocab):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while workers run."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "in.txt").write_text((GOOD * 3 + "\n") * 20000)  # seconds of work: Ctrl-C lands mid-run
    args = [sys.executable, "-m", "bertforge", "create-pretraining-data", "--input", str(tmp_path / "in.txt")]
    args += ["--vocab", str(vocab), "--quiet", "--workers", "2", "--chunk-mb", "0.02", "--shard-mb", "0.04"]
    args += ["--dupe-factor", "5"]
    # As from a terminal: SIGINT at its default even when this suite runs in the background (nohup, `&`), where
    # it is ignored and the child would rightly inherit that and run to the end.
    proc = subprocess.Popen([*args, "--output", str(tmp_path / "cut")], stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 600  # a ceiling for a loaded machine, not a timing
    while not (tmp_path / "cut" / "shard-00001").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        err = proc.communicate(timeout=300)[1]
    finally:  # (it used to hang)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted (SIGINT)" in err and "--resume" in err, err
    assert not (tmp_path / "cut" / "schema.json").exists()
    resumed = subprocess.run([*args, "--output", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0 and "kept from the interrupted run" in resumed.stdout, resumed.stderr
    assert subprocess.run([*args, "--output", str(tmp_path / "full")], capture_output=True).returncode == 0
    for shard in sorted((tmp_path / "full").glob("shard-*")):
        for column in shard.glob("*.npy"):
            assert column.read_bytes() == (tmp_path / "cut" / shard.name / column.name).read_bytes(), column


def test_a_full_disk_is_one_line_naming_the_shard_and_resume_finishes(tmp_path, vocab, capsys, monkeypatch):
    import errno

    import numpy as np

    (tmp_path / "in.txt").write_text(GOOD)
    args = ["create-pretraining-data", "--input", str(tmp_path / "in.txt"), "--vocab", str(vocab), "--output",
            str(tmp_path / "out"), "--quiet", "--workers", "1"]  # fmt: skip

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"while writing {tmp_path / 'out' / 'shard-00000'}" in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["params.json"]  # no partial shard
    monkeypatch.undo()
    assert cli([*args, "--resume"]) == 0
    assert len(PretrainingDataset(tmp_path / "out")) > 0


def test_overwrite_never_deletes_through_a_symbolic_link(tmp_path, vocab, capsys):
    (tmp_path / "in.txt").write_text(GOOD)
    args = ["create-pretraining-data", "--input", str(tmp_path / "in.txt"), "--vocab", str(vocab), "--quiet"]
    assert cli([*args, "--output", str(tmp_path / "real")]) == 0
    (tmp_path / "link").symlink_to(tmp_path / "real")
    capsys.readouterr()
    assert cli([*args, "--output", str(tmp_path / "link"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite does not replace files through a link" in err, err
    assert len(PretrainingDataset(tmp_path / "real")) > 0
    # a shard name in the output that is a link: the link goes, what it points to stays
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    (tmp_path / "real" / "shard-00007").symlink_to(tmp_path / "mine")
    assert cli([*args, "--output", str(tmp_path / "real"), "--overwrite"]) == 0
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    assert not (tmp_path / "real" / "shard-00007").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    capsys.readouterr()
    assert cli([*args, "--output", str(tmp_path / "dangling")]) == 2
    assert "which is not a directory" in capsys.readouterr().err
