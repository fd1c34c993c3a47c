"""The pretraining loop on tiny models: learning, exact resume after a kill, DDP = accumulation, config."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import main as cli
from bertforge.data import PretrainingDataset
from bertforge.data.create import CreateOptions, create_pretraining_data
from bertforge.data.sentences import split_sentences
from bertforge.errors import BertforgeError
from bertforge.modeling import BertForPreTraining
from bertforge.training.config import load_config
from bertforge.training.pretrain import evaluate, pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
NO_DROPOUT = ["model.hidden_dropout_prob=0.0", "model.attention_probs_dropout_prob=0.0"]


@pytest.fixture(scope="module")
def news_data(sample, tmp_path_factory):
    """~2,000 static-masked instances from lee_background (English news) with the English vocab."""
    root = tmp_path_factory.mktemp("news")
    with open(root / "news.txt", "w", encoding="utf-8") as f:
        for line in sample("lee-background").read_text(encoding="utf-8").splitlines():
            if line.strip():
                f.write("\n".join(split_sentences(line)) + "\n\n")
    create_pretraining_data(
        [root / "news.txt"], sample("vocab-en"), root / "data", CreateOptions(dupe_factor=1), progress=False
    )
    return root / "data"


@pytest.fixture(scope="module")
def wiki_data(sample, enwiki, tmp_path_factory):
    """The real English Wikipedia sample: extract-wiki (once per session, tests/conftest.py), then
    create-pretraining-data."""
    root = tmp_path_factory.mktemp("wiki")
    create_pretraining_data(
        enwiki.shards, sample("vocab-en"), root / "data", CreateOptions(dupe_factor=1), progress=False
    )
    return root / "data"


def _small(sample, root: Path, dynamic_masking: bool) -> Path:
    text = "\n\n".join(
        "\n".join(f"Document {d} says fact {s} about the {['red', 'blue', 'green'][s % 3]} house." for s in range(6))
        for d in range(16)
    )
    (root / "small.txt").write_text(text + "\n")
    create_pretraining_data(
        [root / "small.txt"],
        sample("vocab-en"),
        root / "data",
        CreateOptions(dupe_factor=1, max_seq_length=32, max_predictions_per_seq=5, dynamic_masking=dynamic_masking),
        progress=False,
    )
    return root / "data"


@pytest.fixture(scope="module")
def small_data(sample, tmp_path_factory):
    """45 instances: small enough for a tiny model to memorise."""
    return _small(sample, tmp_path_factory.mktemp("small"), dynamic_masking=False)


@pytest.fixture(scope="module")
def small_dynamic_data(sample, tmp_path_factory):
    """The same instances, masked when read (new masks every epoch)."""
    return _small(sample, tmp_path_factory.mktemp("small-dynamic"), dynamic_masking=True)


def tiny(data, *overrides):
    return load_config(TINY, [f"data.path={data}", *overrides])


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


@pytest.mark.slow
def test_tiny_model_overfits_a_small_dataset(small_data, tmp_path):
    config = tiny(
        small_data,
        "train.train_steps=250",
        "train.batch_size=16",
        "train.save_checkpoint_steps=1000",
        "optimizer.learning_rate=3e-3",
        *NO_DROPOUT,
    )
    final = pretrain(config, tmp_path / "run", progress=False)
    result = evaluate(final, small_data, progress=False)
    assert result["mlm_accuracy"] > 0.9, result
    assert result["nsp_accuracy"] > 0.9, result


@pytest.mark.slow
def test_real_run_lowers_the_mlm_loss_and_logs_everything(wiki_data, tmp_path):
    config = tiny(wiki_data, "train.train_steps=60", "train.log_steps=10", "train.save_checkpoint_steps=1000")
    pretrain(config, tmp_path / "run", progress=False)
    lines = [__import__("json").loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30, 40, 50, 60]
    assert lines[-1]["mlm_loss"] < lines[0]["mlm_loss"] - 1.0
    for key in (
        "loss",
        "mlm_loss",
        "nsp_loss",
        "mlm_accuracy",
        "nsp_accuracy",
        "lr",
        "grad_norm",
        "loss_scale",
        "skipped_steps",
        "tokens_per_second",
    ):
        assert key in lines[-1], key
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert cli(["plot", str(tmp_path / "run")]) == 0
    plots = {p.name for p in (tmp_path / "run" / "plots").glob("*.png")}
    assert plots >= {"loss.png", "accuracy.png", "learning_rate.png"}


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bertforge", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _pretrain_args(data, out, steps=40):
    return [
        "pretrain",
        "--config",
        str(TINY),
        "--data",
        str(data),
        "--output",
        str(out),
        "--train-steps",
        str(steps),
        "--save-checkpoint-steps",
        "5",
        "--save-checkpoint-num",
        "2",
        "--quiet",
        "--batch-size",
        "8",
    ]


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_and_resumed_run_ends_bit_identical(news_data, tmp_path, how):
    full = _run(_pretrain_args(news_data, tmp_path / "full"))
    cut = _run(_pretrain_args(news_data, tmp_path / "cut"))
    _wait_for(tmp_path / "cut" / "checkpoints" / "step-00000010", cut)
    cut.send_signal(getattr(signal, how))
    out, err = cut.communicate(timeout=120)
    if how == "SIGTERM":  # a clean stop: a checkpoint of the step reached, a hint, and not a success
        assert cut.returncode == 143, err
        assert "interrupted (SIGTERM): stopped by signal at step" in err and "--resume" in err
    resumed = _run(_pretrain_args(news_data, tmp_path / "cut") + ["--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert full.wait(timeout=300) == 0, full.communicate()
    a = weights(tmp_path / "full" / "checkpoints" / "step-00000040")
    b = weights(tmp_path / "cut" / "checkpoints" / "step-00000040")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # only the newest two checkpoints are kept
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("step-*")) == [
        "step-00000035",
        "step-00000040",
    ]


ACCUMULATED = ["train.batch_size=4", "train.accumulation_steps=2", "train.log_steps=1"]


@pytest.fixture(scope="module")
def epochs_run(small_dynamic_data, tmp_path_factory):
    """An uninterrupted run over an epoch end (45 instances: 5 steps of 4 × 2 per epoch, 8 steps), dynamic
    masks, a checkpoint after every step; returns (config, run directory, steps per epoch)."""
    steps_per_epoch = len(PretrainingDataset(small_dynamic_data)) // 8
    config = tiny(small_dynamic_data, *ACCUMULATED, f"train.train_steps={steps_per_epoch + 3}",
                  "train.save_checkpoint_steps=1", "train.save_checkpoint_num=100")  # fmt: skip
    run = tmp_path_factory.mktemp("epochs") / "full"
    pretrain(config, run, progress=False)
    return config, run, steps_per_epoch


def _losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [__import__("json").loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["mlm_loss"], r["nsp_loss"]) for r in rows]


@pytest.mark.parametrize("where", ["mid-epoch", "epoch-end", "next-epoch"])
def test_resume_across_an_epoch_end_with_accumulation_and_dynamic_masking(epochs_run, tmp_path, caplog, where):
    """A run killed after checkpoint k (its later checkpoints never written) and resumed ends bit-identical to
    the uninterrupted one: from the middle of epoch 0 (the resumed run crosses the epoch end), from the
    checkpoint at the epoch's very end, and from inside epoch 1 (whose dynamic masks differ from epoch 0's)."""
    config, full, steps_per_epoch = epochs_run
    k = {"mid-epoch": 2, "epoch-end": steps_per_epoch, "next-epoch": steps_per_epoch + 1}[where]
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for checkpoint in (cut / "checkpoints").glob("step-*"):
        if int(checkpoint.name.removeprefix("step-")) > k:
            shutil.rmtree(checkpoint)
    (cut / "checkpoints" / "latest").write_text(f"step-{k:08d}\n")
    with caplog.at_level("INFO", logger="bertforge"):
        final = pretrain(config, cut, resume=True, progress=False)
    assert f"resuming at step {k}" in caplog.text  # (a run started again from scratch would end the same)
    a, b = weights(full / "checkpoints" / final.name), weights(final)
    assert final.name == f"step-{config.train.train_steps:08d}" and a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a), [n for n in a if not torch.equal(a[n], b[n])]
    assert _losses(cut) == _losses(full)


def test_the_data_seed_reaches_the_dynamic_masks(small_dynamic_data, tmp_path):
    """`data.seed` chooses the dynamic masks: the first step of two runs that differ only in it sees other
    masked positions (other losses). (No other test set data.seed: dropping it on its way to the dataset
    passed.)"""
    common = ["train.train_steps=1", "train.batch_size=8", "train.log_steps=1", "optimizer.warmup_steps=0"]
    runs = {seed: tmp_path / f"seed-{seed}" for seed in (0, 7)}
    for seed, run in runs.items():
        pretrain(tiny(small_dynamic_data, *common, f"data.seed={seed}"), run, progress=False)
    assert _losses(runs[0]) != _losses(runs[7])
    assert load_config(runs[7] / "config.yaml").data.seed == 7


def _grad_norms(run: Path) -> list[float]:
    return [__import__("json").loads(line)["grad_norm"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["adamw", "momentum"])
def test_single_process_accumulation_equals_one_large_batch(small_data, tmp_path, optimizer):
    """k micro-batches of b make the step that one batch of k·b makes (the loss is normalised over the step):
    the same gradient norm at every step (before clipping) and the same weights. AdamW is nearly
    scale-invariant and clipping hides a scale too, so a loss divided once more by k would pass a comparison
    of AdamW's weights alone: the norms, and momentum SGD without clipping, see it."""
    common = ["train.train_steps=4", "optimizer.warmup_steps=0", "optimizer.learning_rate=5e-3", "train.log_steps=1",
              f"optimizer.name={optimizer}", *NO_DROPOUT]  # fmt: skip
    if optimizer == "momentum":
        common += ["optimizer.clip_norm=0", "optimizer.learning_rate=0.5"]
    large = pretrain(tiny(small_data, "train.batch_size=8", *common), tmp_path / "large", progress=False)
    small = pretrain(tiny(small_data, *ACCUMULATED, *common), tmp_path / "small", progress=False)
    assert _grad_norms(tmp_path / "large") == pytest.approx(_grad_norms(tmp_path / "small"), rel=1e-4)
    a, b = weights(large), weights(small)
    torch.manual_seed(1)  # the run's seed: the initial weights, to see that training moved them well past atol
    init = BertForPreTraining(tiny(small_data).bert_config()).state_dict()
    assert max((a[n] - init[n]).abs().max().item() for n in a) > 1e-2
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=1e-5), (name, (a[name] - b[name]).abs().max())


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_accumulation(news_data, tmp_path):
    common = [
        "--config",
        str(TINY),
        "--data",
        str(news_data),
        "--train-steps",
        "6",
        "--batch-size",
        "4",
        "--quiet",
        "--model.hidden_dropout_prob",
        "0",
        "--model.attention_probs_dropout_prob",
        "0",
        "--optimizer.warmup_steps",
        "0",
        "--optimizer.learning_rate",
        "5e-3",
    ]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "bertforge",
            "pretrain",
            "--output",
            str(tmp_path / "ddp"),
            *common,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _run(["pretrain", "--output", str(tmp_path / "single"), "--accumulation-steps", "2", *common])
    assert single.wait(timeout=300) == 0, single.communicate()
    a = weights(tmp_path / "ddp" / "checkpoints" / "step-00000006")
    b = weights(tmp_path / "single" / "checkpoints" / "step-00000006")
    torch.manual_seed(1)  # the run's seed: the initial weights, to see that training moved them well past atol
    init = BertForPreTraining(tiny(news_data).bert_config()).state_dict()
    assert max((a[n] - init[n]).abs().max().item() for n in a) > 1e-2
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), (name, (a[name] - b[name]).abs().max())


@pytest.mark.slow
def test_resume_with_another_number_of_processes_is_a_one_line_error(news_data, tmp_path, capsys):
    """A run of 2 processes resumed by 1: its data order, each rank's part and the global batch depend on
    the number of processes, so that is refused (docs/pretraining.md), as one line naming the checkpoint. It used to
    be a ValueError traceback from the sampler."""
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(TINY), "--data", str(news_data), "--output", str(out), "--quiet"]
    args += ["--train-steps", "2", "--batch-size", "4", "--save-checkpoint-steps", "1", "--optimizer.warmup_steps", "0"]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run([*torchrun, "-m", "bertforge", *args], env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, [line for line in ddp.stderr.splitlines() if "error:" in line] or ddp.stderr[-3000:]
    assert cli([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    checkpoint = out / "checkpoints" / "step-00000002"
    assert err.count("\n") == 1, err
    assert f"{checkpoint}: saved by 2 process(es) with data seed 1, resumed with 1 and 1" in err, err


def test_config_priority_and_errors(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: 7\n  epochs: 3\noptimizer:\n  learning_rate: 0.1\n")
    config = load_config(tmp_path / "c.yaml", ["optimizer.learning_rate=0.5"])
    assert (config.train.batch_size, config.train.epochs, config.optimizer.learning_rate) == (7, 3, 0.5)
    assert config.optimizer.warmup_steps == 10000  # default kept
    with pytest.raises(
        BertforgeError,
        match=r"unknown config key 'optimizer.learning_rat'; did you mean "
        r"'optimizer.learning_rate'",
    ):
        load_config(tmp_path / "c.yaml", ["optimizer.learning_rat=1"])
    (tmp_path / "bad.yaml").write_text("trian:\n  epochs: 1\n")
    with pytest.raises(BertforgeError, match=r"bad.yaml: unknown config key 'trian'; did you mean 'train'"):
        load_config(tmp_path / "bad.yaml")
    code = cli(
        [
            "pretrain",
            "--config",
            str(TINY),
            "--data",
            str(tmp_path),
            "--output",
            str(tmp_path / "r"),
            "--optimizer.learning_rat",
            "1",
        ]
    )
    assert code == 2 and "did you mean 'optimizer.learning_rate'" in capsys.readouterr().err


def _recomputed_eval(model_path: Path, data: Path, n: int) -> dict[str, float]:
    """pretrain-eval's numbers for the first n instances, from the model's logits one unpadded instance at a
    time: MLM loss and accuracy over the real (weight 1) predictions, NSP loss and accuracy over instances."""
    model = BertForPreTraining.from_pretrained(model_path).eval()
    dataset = PretrainingDataset(data)
    mlm_nll, mlm_correct, mlm_count, nsp_nll, nsp_correct = [], [], 0, [], []
    with torch.no_grad():
        for i in range(n):
            item = {k: torch.from_numpy(np.asarray(v)) for k, v in dataset[i].items()}
            length = int(item["input_mask"].sum())
            out = model(item["input_ids"][None, :length], item["segment_ids"][None, :length])
            mlm = torch.log_softmax(out.mlm_logits[0].double(), -1)  # (length, V): every position
            for position, target, weight in zip(item["masked_lm_positions"], item["masked_lm_ids"],
                                                item["masked_lm_weights"]):  # fmt: skip
                if weight:
                    mlm_nll.append(-mlm[position, target].item())
                    mlm_correct.append(int(mlm[position].argmax()) == int(target))
                    mlm_count += 1
            nsp = torch.log_softmax(out.nsp_logits[0].double(), -1)
            label = int(item["next_sentence_labels"])
            nsp_nll.append(-nsp[label].item())
            nsp_correct.append(int(nsp.argmax()) == label)
    return {
        "instances": n,
        "mlm_loss": sum(mlm_nll) / mlm_count,
        "mlm_accuracy": sum(mlm_correct) / mlm_count,
        "nsp_loss": sum(nsp_nll) / n,
        "nsp_accuracy": sum(nsp_correct) / n,
    }


def test_pretrain_eval_command(small_data, tmp_path, capsys):
    """Loss and accuracy against a recomputation from the logits, for a model trained enough that neither
    accuracy is 0 or 1, in batches of 7 (ragged, padded), and on the first 10 instances only (--limit)."""
    config = tiny(small_data, "train.train_steps=8", "train.batch_size=8", "optimizer.warmup_steps=0",
                  "optimizer.learning_rate=5e-3")  # fmt: skip
    final = pretrain(config, tmp_path / "run", progress=False)
    capsys.readouterr()
    for limit in (None, 10):
        args = ["pretrain-eval", "--model", str(final), "--data", str(small_data), "--quiet", "--batch-size", "7"]
        assert cli(args + (["--limit", str(limit)] if limit else [])) == 0
        result = __import__("json").loads(capsys.readouterr().out)
        expected = _recomputed_eval(final, small_data, limit or len(PretrainingDataset(small_data)))
        assert result == pytest.approx(expected, rel=1e-5), limit
        assert 0 < expected["mlm_accuracy"] < 1 and 0 < expected["nsp_accuracy"] < 1, expected


def test_existing_run_is_not_overwritten(small_data, tmp_path):
    pretrain(tiny(small_data, "train.train_steps=1", "train.batch_size=8"), tmp_path / "run", progress=False)
    with pytest.raises(BertforgeError, match="already holds a run; pass --resume"):
        pretrain(tiny(small_data, "train.train_steps=1", "train.batch_size=8"), tmp_path / "run", progress=False)


def test_bf16_autocast_runs_and_fp16_needs_cuda(small_data, tmp_path):
    final = pretrain(
        tiny(small_data, "train.train_steps=2", "train.batch_size=8", "train.precision=bf16"),
        tmp_path / "bf16",
        progress=False,
    )
    assert all(torch.isfinite(t).all() for t in weights(final).values())
    with pytest.raises(BertforgeError, match="fp16 needs a CUDA device"):
        pretrain(tiny(small_data, "train.precision=fp16"), tmp_path / "fp16", progress=False)


def test_resume_with_other_model_or_data_settings_is_an_error(news_data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["pretrain", "--config", str(TINY), "--data", str(news_data), "--output", str(out), "--quiet"]
    assert cli([*base, "--train-steps", "2", "--batch-size", "4"]) == 0
    saved = (out / "config.yaml").read_text()
    changed = [*base, "--train-steps", "4", "--batch-size", "4", "--resume", "--model.hidden_size", "128"]
    assert cli(changed) == 2
    err = capsys.readouterr().err
    assert "model.hidden_size: 64 -> 128" in err and "train.train_steps: 2 -> 4" in err
    assert (out / "config.yaml").read_text() == saved  # the run still says what it is
    # What may change on resume does not stop it.
    assert cli([*base, "--train-steps", "2", "--batch-size", "4", "--resume", "--train.log_steps", "1"]) == 0


def test_resume_before_the_first_checkpoint_starts_from_step_zero(news_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text((ROOT / "configs" / "pretrain" / "tiny.yaml").read_text())  # died early
    args = ["pretrain", "--config", str(TINY), "--data", str(news_data), "--output", str(out), "--quiet"]
    assert cli([*args, "--train-steps", "2", "--batch-size", "4"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert cli([*args, "--train-steps", "2", "--batch-size", "4", "--resume"]) == 0
    assert "no complete checkpoint yet; starting from step 0" in capsys.readouterr().err
    assert (out / "checkpoints" / "step-00000002" / "trainer.pt").is_file()


SLOW_RANK = """
import sys, time
from bertforge.training import distributed
setup = distributed.setup
def slow(*args, **kwargs):  # rank 1 lags behind after joining, as on a loaded machine
    run = setup(*args, **kwargs)
    if run.rank == 1:
        time.sleep(3)
    return run
distributed.setup = slow
from bertforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_lagging_rank_does_not_take_the_new_run_for_an_old_one(news_data, tmp_path):
    """Every rank checks that the output holds no run before rank 0 writes its config.yaml there; a rank that
    checked after that write refused its own run ("already holds a run", exit 2) and the job died."""
    (tmp_path / "slow_rank.py").write_text(SLOW_RANK)
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(TINY), "--data", str(news_data), "--output", str(out), "--quiet"]
    args += ["--train-steps", "1", "--batch-size", "4", "--optimizer.warmup_steps", "0"]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run([*torchrun, str(tmp_path / "slow_rank.py"), *args], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert ddp.returncode == 0, [line for line in ddp.stderr.splitlines() if "error:" in line] or ddp.stderr[-3000:]


def test_too_little_data_for_one_step_is_refused_with_nothing_written(small_data, tmp_path):
    """45 instances and a batch of 64: refused before anything is written, so the same --output takes the
    corrected command (a config.yaml left behind made it 'already hold a run')."""
    out = tmp_path / "run"
    with pytest.raises(BertforgeError, match="45 examples make no full step of 64"):
        pretrain(tiny(small_data, "train.train_steps=1", "train.batch_size=64"), out, progress=False)
    assert not out.exists()
    pretrain(tiny(small_data, "train.train_steps=1", "train.batch_size=8"), out, progress=False)
