"""Dynamic loss scaling (the model zoo's DynamicLossScaleUpdateCell rules), the autocast helper, and the fp16 skip
through the training loop itself (on CPU)."""

import pytest
import torch
from torch import nn

from bertforge.errors import BertforgeError
from bertforge.training.optimizers import AdamW
from bertforge.training.precision import DynamicLossScaler, autocast_context
from bertforge.training.schedule import warmup_poly_lr


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    return model, AdamW(model.parameters(), lr=1e-2)


def test_scale_and_unscale():
    model, optimizer = model_and_optimizer()
    scaler = DynamicLossScaler(init_scale=1024.0)
    loss = model(torch.randn(4, 3)).pow(2).sum()
    scaled = scaler.scale(loss)
    assert torch.equal(scaled, loss * 1024)
    scaled.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert scaler.unscale_and_check(optimizer) is False
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g / 1024, rtol=0, atol=0)  # power of two: exact


def test_overflow_skips_step_and_halves_scale():
    model, optimizer = model_and_optimizer()
    scaler = DynamicLossScaler(init_scale=1024.0, scale_window=3)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.bias.grad[0] = float("inf")
    found_inf = scaler.unscale_and_check(model.parameters())
    assert found_inf is True
    if not found_inf:
        optimizer.step()
    scaler.update(found_inf)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert optimizer.state_dict()["state"] == {}
    assert (scaler.loss_scale, scaler.skipped, scaler.good_steps) == (512.0, 1, 0)
    model.weight.grad[0, 0] = float("nan")
    assert scaler.unscale_and_check(optimizer) is True


def test_scale_grows_after_window_of_good_steps():
    scaler = DynamicLossScaler(init_scale=8.0, scale_window=3, max_consecutive_overflows=10)
    for expected in (8.0, 8.0, 16.0, 16.0, 16.0, 32.0):
        scaler.update(False)
        assert scaler.loss_scale == expected
    scaler.update(False)
    scaler.update(False)
    scaler.update(True)  # an overflow resets the count of good steps
    assert scaler.loss_scale == 16.0
    for expected in (16.0, 16.0, 32.0):
        scaler.update(False)
        assert scaler.loss_scale == expected


def test_scale_never_below_one_and_consecutive_overflows_raise():
    scaler = DynamicLossScaler(init_scale=2.0, max_consecutive_overflows=3)
    scaler.update(True)
    scaler.update(True)
    assert scaler.loss_scale == 1.0
    scaler.update(False)  # a good step breaks the run of overflows
    scaler.update(True)
    scaler.update(True)
    with pytest.raises(BertforgeError, match="3 consecutive steps overflowed in fp16.*loss scale now 1.*bf16"):
        scaler.update(True)
    assert scaler.skipped == 5


def test_state_dict_round_trip():
    scaler = DynamicLossScaler(init_scale=64.0, scale_window=4)
    for found_inf in (True, False, False):
        scaler.update(found_inf)
    restored = DynamicLossScaler(init_scale=64.0, scale_window=4)
    restored.load_state_dict(scaler.state_dict())
    assert (
        restored.state_dict()
        == scaler.state_dict()
        == {"loss_scale": 32.0, "good_steps": 2, "consecutive_overflows": 0, "skipped": 1}
    )
    scaler.update(False)
    scaler.update(False)
    restored.update(False)
    restored.update(False)
    assert restored.loss_scale == scaler.loss_scale == 64.0


def test_disabled_scaler_is_a_no_op():
    model, optimizer = model_and_optimizer()
    scaler = DynamicLossScaler(enabled=False)
    loss = model(torch.randn(2, 3)).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    assert scaler.unscale_and_check(optimizer) is False
    scaler.update(True)
    assert (scaler.loss_scale, scaler.skipped) == (1.0, 0)


@pytest.mark.parametrize(
    "precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_autocast_context_on_cpu(precision, dtype):
    x = torch.randn(2, 2)
    with autocast_context(precision, "cpu"):
        assert (x @ x).dtype == dtype  # torch 2.13 autocasts fp16 on CPU too


def test_autocast_context_errors():
    with pytest.raises(BertforgeError, match="precision must be one of"):
        autocast_context("fp8", "cpu")
    with pytest.raises(BertforgeError, match="not available on device type 'meta'"):
        autocast_context("bf16", "meta")


@pytest.mark.parametrize("init_scale,skipped", [(2**40, [1, 2, 3]), (1.0, [0, 0, 0])])
def test_the_loop_skips_overflowing_fp16_steps(tmp_path, init_scale, skipped):
    """The skip through the training loop itself, on CPU (fp16 autocasts there too; `pretrain` only refuses it
    for speed): a loss scale of 2^40 overflows fp16 gradients, so every step is skipped, the scale halves each
    time, the weights stay the seeded initial ones and the learning rate stays where the schedule starts; at
    scale 1 nothing overflows, and the weights and the learning rate move."""
    from safetensors.torch import load_file

    from bertforge.data import PretrainingDataset
    from bertforge.modeling import BertForPreTraining
    from bertforge.training import distributed, load_config, loop
    from bertforge.training.pretrain import PRETRAINING, collate
    from tests.training.test_cuda import DATA, TINY, metrics

    config = load_config(TINY, [f"data.path={DATA}", "train.batch_size=4", "train.train_steps=3", "train.log_steps=1",
                                "train.precision=fp16", f"loss_scale.init_scale={init_scale}"])  # fmt: skip
    torch.manual_seed(config.train.seed)
    model = BertForPreTraining(config.bert_config())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    dist = distributed.setup("cpu")
    try:
        job = loop.Job(model, PretrainingDataset(DATA), collate, PRETRAINING)
        run = loop.setup(job, config.train, config.optimizer, config.loss_scale, tmp_path, dist)
        final = loop.train(run, progress=False)
    finally:
        distributed.teardown()
    scales = [init_scale / 2**n for n in skipped]
    logged = metrics(tmp_path)
    assert [(r["skipped_steps"], r["loss_scale"]) for r in logged] == list(zip(skipped, scales))
    oc = config.optimizer
    updates = [step - n for step, n in enumerate(skipped, 1)]  # updates done; the lr logged is the next one's
    expected = [
        warmup_poly_lr(n, learning_rate=oc.learning_rate, end_learning_rate=oc.end_learning_rate,
                       warmup_steps=oc.warmup_steps, decay_steps=oc.warmup_steps + 1, power=oc.power)
        for n in updates
    ]  # fmt: skip
    assert [r["lr"] for r in logged] == pytest.approx(expected, rel=1e-12)
    saved = load_file(final / "model.safetensors")
    unchanged = [torch.equal(saved[name], initial[name]) for name in saved]
    assert all(unchanged) if skipped[-1] else not any(unchanged)
