"""The training loop's guard against non-finite values, on a one-weight job: a non-finite loss alone, or a
non-finite gradient alone, stops the run before the weights change (fine-tuning's test makes both non-finite
at once, which a guard checking only one of them also passes)."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from bertforge.errors import BertforgeError
from bertforge.training import distributed, loop
from bertforge.training.config import LossScaleConfig, OptimizerConfig, TrainConfig


def _job(sums) -> loop.Job:
    """y = w·x over 4 examples of x = 1; `sums(model, batch)` gives the differentiable terms."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1, bias=False)
    data = [{"x": torch.ones(1)} for _ in range(4)]
    objective = loop.Objective(
        totals=lambda micro: {"n": torch.tensor(float(sum(len(mb["x"]) for mb in micro)))},
        sums=sums,
        loss=lambda s, t: s["value"] / t["n"],
        summary=lambda s: {"loss": float(s["value"])},
        tokens=lambda mb: len(mb["x"]),
    )
    return loop.Job(model, data, lambda items: {"x": torch.stack([it["x"] for it in items])}, objective)


def _step(job: loop.Job, tmp_path) -> None:
    train_config = TrainConfig(train_steps=1, batch_size=4, device="cpu", save_checkpoint_steps=1)
    oc = OptimizerConfig(name="momentum", learning_rate=0.1, warmup_steps=0)
    run = loop.setup(job, train_config, oc, LossScaleConfig(), tmp_path, distributed.setup("cpu"))
    loop.train_step(run, [next(iter(run.loader))])


def test_finite_values_update_the_weights(tmp_path):
    job = _job(lambda model, mb: {"value": model(mb["x"]).pow(2).sum()})
    before = job.model.weight.detach().clone()
    _step(job, tmp_path)
    assert not torch.equal(job.model.weight, before)


@pytest.mark.parametrize(
    "which, sums",
    [
        # an infinite term without a gradient: the loss is inf, every gradient finite
        ("loss", lambda model, mb: {"value": model(mb["x"]).pow(2).sum() + torch.tensor(math.inf)}),
        # sqrt at 0: the loss is 0, its gradient inf
        ("gradient", lambda model, mb: {"value": (model(mb["x"]) * 0).abs().sqrt().sum()}),
    ],
)
def test_a_non_finite_loss_or_gradient_alone_stops_the_step(tmp_path, which, sums):
    job = _job(sums)
    before = job.model.weight.detach().clone()
    with pytest.raises(BertforgeError, match="stopped before updating the weights") as caught:
        _step(job, tmp_path)
    loss, norm = caught.value.args[0].split("the loss is ")[1].split(" and the gradient norm ")
    norm = norm.split(";")[0]
    assert math.isfinite(float(loss)) == (which != "loss") and math.isfinite(float(norm)) == (which != "gradient")
    assert torch.equal(job.model.weight, before)


def test_only_the_main_process_writes_a_checkpoint(tmp_path):
    """Every rank holds the same state; two ranks renaming their copies into the same step directory raced
    (ENOTEMPTY, a failed DDP run). A rank other than 0 writes nothing and names where rank 0 wrote."""
    job = _job(lambda model, mb: {"value": model(mb["x"]).pow(2).sum()})
    job.model.save_pretrained = lambda folder: torch.save(job.model.state_dict(), folder / "weights.pt")
    train_config = TrainConfig(train_steps=1, batch_size=4, device="cpu", save_checkpoint_steps=1)
    oc = OptimizerConfig(name="momentum", learning_rate=0.1, warmup_steps=0)
    main = distributed.setup("cpu")
    run = loop.setup(job, train_config, oc, LossScaleConfig(), tmp_path, main)
    run.step = 1
    run.dist = dataclasses.replace(main, rank=1)
    path = loop.save(run)
    assert not path.exists() and not any(tmp_path.glob("checkpoints/*"))
    run.dist = main
    assert loop.save(run) == path and (path / "trainer.pt").is_file()
