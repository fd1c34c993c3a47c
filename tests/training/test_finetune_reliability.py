"""Fine-tuning never fails silently: non-finite labels and losses stop it with the file/step named, a second
run on the same output is refused at once, Ctrl-C is not a success and `--resume` ends exactly where an
uninterrupted run ends, and bad data or settings are found before the first step."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import main as cli
from tests.polarity import sentences, write_csv

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")


def finetune(*args):
    return cli(["finetune", "classification", "--quiet", "--device", "cpu", *map(str, args)])


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertforge", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_nan_label_is_rejected_naming_file_and_line(tiny_checkpoint, tmp_path, capsys):
    rows = [("the film was good", 1.0), ("the film was bad", "nan"), ("the plot was fine", 0.5)]
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    out = tmp_path / "out"
    args = ["--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out]
    assert finetune(*args, "--task.regression", "true", "--task.label", "score") == 2
    assert "train.csv line 3: label 'nan' in 'score' is not a finite number" in capsys.readouterr().err
    assert not (out / "best").exists()


def test_a_diverging_run_stops_before_the_weights_are_spoilt(tiny_checkpoint, tmp_path, capsys):
    rows = [(t, float(len(t))) for t, _ in sentences(64, 1)]
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    out = tmp_path / "out"
    code = finetune("--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out, "--batch-size", 8,
                    "--task.regression", "true", "--task.label", "score", "--assessment-method",
                    "spearman_correlation", "--learning-rate", "1e30", "--train.eval_steps", 1)  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "stopped before updating the weights" in err and "the loss is" in err
    assert not (out / "eval_results.json").exists()
    if (out / "best").exists():  # a model kept before the fault is a finite one
        assert all(torch.isfinite(t).all() for t in load_file(out / "best" / "model.safetensors").values())


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    # The holder keeps the lock until it is killed: no sleep that a loaded machine could outlast.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom bertforge.fileio import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()", str(out)],
        env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        train = write_csv(tmp_path / "train.csv", sentences(64, 1))
        args = ["--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out, "--epochs", 1]
        assert finetune(*args) == 2
        assert f"{out} is in use by another run (process {holder.pid})" in capsys.readouterr().err
        assert cli(["pretrain", "--data", str(tmp_path), "--output", str(out), "--quiet"]) == 2
        assert f"(process {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert finetune(*args) == 0  # the lock died with its holder: nothing stale blocks the next run


def test_bad_data_and_settings_are_found_before_the_first_step(tiny_checkpoint, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", sentences(64, 1))
    unlabelled = write_csv(tmp_path / "dev.csv", [(t,) for t, _ in sentences(8, 2)], header=("text",))
    out = tmp_path / "out"

    def fails(*args, expect):
        assert finetune("--init", tiny_checkpoint, "--output", out, *args) == 2
        assert expect in capsys.readouterr().err
        assert not out.exists()  # nothing written: not even the run lock or the folder it made

    fails("--train", train, "--dev", unlabelled, expect="dev.csv: no labels; evaluation needs a labelled dev file")
    fails("--train", train, "--dev", train, "--seeds", "1,-2", expect="--seeds must be integers >= 0")
    fails("--train", train, "--dev", train, "--max-seq-length", 1024, expect="exceeds the 128 positions")
    fails("--train", train, "--dev", train, "--batch-size", 128, expect="64 examples make no full step of 128")
    (tmp_path / "labels.txt").write_text("neg\npos\n")
    fails(
        "--train",
        unlabelled,
        "--dev",
        train,
        "--labels",
        tmp_path / "labels.txt",
        expect="dev.csv: no labels; training needs",
    )
    bad_test = tmp_path / "test.csv"
    bad_test.write_bytes(b"text\nthe film was good\n\xff\n")
    fails("--train", train, "--dev", train, "--test", bad_test, "--do-predict", expect="test.csv line 3: not valid")


def test_a_linked_lock_file_is_refused_and_its_target_kept(tiny_checkpoint, tmp_path, capsys):
    from bertforge.fileio import LOCK_FILE

    (tmp_path / "important.txt").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(tmp_path / "important.txt")
    train = write_csv(tmp_path / "train.csv", sentences(16, 1))
    expect = f"error: {out / LOCK_FILE} is a symbolic link (to {tmp_path / 'important.txt'}); bertforge never writes"
    assert finetune("--train", train, "--dev", train, "--init", tiny_checkpoint, "--output", out) == 2
    assert expect in capsys.readouterr().err
    assert cli(["pretrain", "--data", str(tmp_path), "--output", str(out), "--quiet"]) == 2
    assert expect in capsys.readouterr().err
    assert (tmp_path / "important.txt").read_text() == "keep me"


def test_a_pretraining_run_that_fails_its_checks_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["pretrain", "--output", str(out), "--quiet"]) == 2
    assert "no training data: pass --data" in capsys.readouterr().err
    assert not out.exists()


def test_a_damaged_feature_cache_entry_is_named_and_rebuilt(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTFORGE_CACHE", str(tmp_path / "cache"))
    train = write_csv(tmp_path / "train.csv", sentences(32, 1))
    args = ["--train", train, "--dev", train, "--init", tiny_checkpoint, "--epochs", 1, "--batch-size", 16]
    assert finetune(*args, "--output", tmp_path / "first") == 0
    (entry,) = (tmp_path / "cache" / "features").iterdir()
    built = entry.read_bytes()
    damages = {
        "truncated": built[: len(built) // 2],
        "not UTF-8": b"\xff" + built[1:],
        "a row short": json.dumps(json.loads(built) | {"example_index": json.loads(built)["example_index"][1:]}),
    }
    for name, damaged in damages.items():
        entry.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        capsys.readouterr()
        assert finetune(*args, "--output", tmp_path / name) == 0, name
        assert f"{entry}: damaged feature cache entry (" in capsys.readouterr().err, name
        assert entry.read_bytes() == built, name  # rebuilt as the first run built it
        assert json.loads((tmp_path / name / "eval_results.json").read_text()) == json.loads(
            (tmp_path / "first" / "eval_results.json").read_text()
        ), name


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.time() + seconds
    while not (path.is_file() and len(path.read_text().splitlines()) >= n):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not reach {n} lines"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def polarity_run(tiny_checkpoint, tmp_path_factory):
    """Arguments of a two-seed fine-tuning run that checkpoints every 5 steps, and its uninterrupted result."""
    root = tmp_path_factory.mktemp("run")
    train = write_csv(root / "train.csv", sentences(800, 1))
    dev = write_csv(root / "dev.csv", sentences(64, 2))
    common = ["finetune", "classification", "--quiet", "--device", "cpu", "--train", train, "--dev", dev,
              "--init", tiny_checkpoint, "--epochs", 2, "--batch-size", 16, "--learning-rate", "2e-3",
              "--seeds", "1,2", "--train.log_steps", 1, "--train.save_checkpoint_steps", 5]  # fmt: skip
    full = spawn(*common, "--output", root / "full")
    assert full.wait(timeout=600) == 0, full.communicate()
    return common, root / "full"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_run_is_not_a_success_and_resume_ends_where_an_uninterrupted_run_ends(
    polarity_run, tmp_path, how
):
    common, full = polarity_run
    cut = spawn(*common, "--output", tmp_path / "cut")
    wait_for_lines(tmp_path / "cut" / "seed-1" / "metrics.jsonl", random.Random(how).randint(6, 40), cut)
    cut.send_signal(getattr(signal, how))
    _, err = cut.communicate(timeout=120)
    if how == "SIGINT":  # a clean stop: a checkpoint of the step reached, exit 130, no final results
        assert cut.returncode == 130, err
        assert "interrupted (SIGINT)" in err
    else:
        assert cut.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "eval_results.json").exists()
    assert not (tmp_path / "cut" / "seed-1" / "eval_results.json").exists()
    assert not (tmp_path / "cut" / "seed-2").exists()  # the remaining seed did not run on

    again = spawn(*common, "--output", tmp_path / "cut")  # without --resume: refused, nothing touched
    assert again.wait(timeout=120) == 2 and "--resume" in again.communicate()[1]
    resumed = spawn(*common, "--output", tmp_path / "cut", "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.communicate()

    for seed in ("seed-1", "seed-2"):
        a = json.loads((full / seed / "eval_results.json").read_text())
        b = json.loads((tmp_path / "cut" / seed / "eval_results.json").read_text())
        assert a == b, seed
        wa = load_file(full / seed / "best" / "model.safetensors")
        wb = load_file(tmp_path / "cut" / seed / "best" / "model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), seed
    summary = json.loads((tmp_path / "cut" / "eval_results.json").read_text())
    assert summary == json.loads((full / "eval_results.json").read_text())


def evaluation_only(tiny_checkpoint, root: Path, n: int) -> list:
    """An evaluation-only job (no training) on `n` dev sentences: its arguments."""
    dev = write_csv(root / "dev.csv", sentences(n, 3))
    (root / "labels.txt").write_text("neg\npos\n")
    return ["finetune", "classification", "--quiet", "--device", "cpu", "--dev", dev, "--labels",
            root / "labels.txt", "--init", tiny_checkpoint, "--no-do-train", "--output", root / "out"]  # fmt: skip


def test_sigterm_before_the_results_are_final_is_a_stop_with_nothing_final(tiny_checkpoint, tmp_path):
    """Outside the training loop too (here: during evaluation) a stop is `interrupted`, exit 143, and no
    eval_results.json; before, the default handler killed the process without a word."""
    job = spawn(*evaluation_only(tiny_checkpoint, tmp_path, 4000), "--task.eval_batch_size", "1")
    deadline = time.time() + 120
    while not (tmp_path / "out" / "config.yaml").is_file():  # written once the checks passed: evaluating now
        assert job.poll() is None and time.time() < deadline, job.communicate()
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 143 and "interrupted (SIGTERM)" in err and "not written" in err, err
    assert not (tmp_path / "out" / "eval_results.json").exists()


def test_sigterm_after_the_results_are_written_ends_a_finished_job(tiny_checkpoint, tmp_path):
    """eval_results.json is written last: once it is there the job has finished, and a stop arriving then
    (while the process tidies up) must not turn exit 0 into 143."""
    job = spawn(*evaluation_only(tiny_checkpoint, tmp_path, 200))
    deadline = time.time() + 120
    while not (tmp_path / "out" / "eval_results.json").is_file():
        assert job.poll() is None and time.time() < deadline, job.communicate()
        time.sleep(0.002)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
