"""Warm-up + polynomial decay against the formula of MindSpore's WarmUpLR / PolynomialDecayLR."""

import math

import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.training.schedule import build_scheduler, warmup_poly_lr

LR, END, WARMUP, DECAY, POWER = 2e-4, 1e-6, 10, 100, 2.0
KW = dict(learning_rate=LR, end_learning_rate=END, warmup_steps=WARMUP, decay_steps=DECAY, power=POWER)


def poly(progress: float) -> float:
    return (LR - END) * (1 - progress) ** POWER + END


@pytest.mark.parametrize("decay_from_zero", [False, True])
def test_warmup_is_linear_from_zero(decay_from_zero):
    for step, expected in [(0, 0.0), (5, LR / 2), (9, 0.9 * LR)]:
        assert math.isclose(
            warmup_poly_lr(step, **KW, decay_from_zero=decay_from_zero), expected, rel_tol=1e-15, abs_tol=0
        )


def test_continuous_decay_starts_after_warmup():
    assert warmup_poly_lr(WARMUP, **KW) == LR  # the peak, continuous with warm-up
    assert math.isclose(warmup_poly_lr(55, **KW), poly(45 / 90), rel_tol=1e-15)
    assert math.isclose(warmup_poly_lr(99, **KW), poly(89 / 90), rel_tol=1e-15)


def test_decay_from_zero_is_the_model_zoo_curve_with_its_jump():
    at_boundary = warmup_poly_lr(WARMUP, **KW, decay_from_zero=True)
    assert math.isclose(at_boundary, poly(10 / 100), rel_tol=1e-15)
    assert at_boundary < warmup_poly_lr(WARMUP - 1, **KW, decay_from_zero=True)  # 1.8e-4 -> 1.62e-4
    assert math.isclose(warmup_poly_lr(55, **KW, decay_from_zero=True), poly(55 / 100), rel_tol=1e-15)


@pytest.mark.parametrize("decay_from_zero", [False, True])
def test_end_and_after(decay_from_zero):
    for step in (DECAY, DECAY + 1, 10 * DECAY):
        assert math.isclose(warmup_poly_lr(step, **KW, decay_from_zero=decay_from_zero), END, rel_tol=1e-15)


def test_no_warmup():
    kw = KW | {"warmup_steps": 0}
    assert warmup_poly_lr(0, **kw) == LR
    assert math.isclose(warmup_poly_lr(50, **kw), poly(0.5), rel_tol=1e-15)


def test_scheduler_drives_the_optimizer_and_resumes():
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        return optimizer, build_scheduler(optimizer, **KW)

    optimizer, scheduler = make()
    seen = []
    for _ in range(DECAY + 5):
        seen.append(optimizer.param_groups[0]["lr"])  # the lr this update uses
        optimizer.step()
        scheduler.step()
    expected = [warmup_poly_lr(step, **KW) for step in range(DECAY + 5)]
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-20) for a, b in zip(seen, expected))

    optimizer, scheduler = make()
    for _ in range(37):
        optimizer.step()
        scheduler.step()
    resumed_opt, resumed = make()
    resumed_opt.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    resumed_opt.step()
    resumed.step()
    assert math.isclose(resumed.get_last_lr()[0], warmup_poly_lr(38, **KW), rel_tol=1e-12)


def test_errors():
    with pytest.raises(BertforgeError, match="decay_steps \\(10\\) must be larger than warmup_steps \\(10\\)"):
        warmup_poly_lr(0, **KW | {"decay_steps": 10})
    with pytest.raises(BertforgeError, match="step must be >= 0"):
        warmup_poly_lr(-1, **KW)
    with pytest.raises(BertforgeError, match="end_learning_rate"):
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR), **KW | {"end_learning_rate": 1.0})
