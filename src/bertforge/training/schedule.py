"""Learning rate: linear warm-up, then polynomial decay to `end_learning_rate` (BERT's schedule).

The MindSpore model zoo's BertLearningRate (official/nlp/bert/src/utils.py) combines nn.WarmUpLR and
nn.PolynomialDecayLR (mindspore/nn/learning_rate_schedule.py), with decay_steps = the run's total steps:

    step < warmup_steps:  lr = learning_rate · step / warmup_steps
    otherwise:            lr = (learning_rate − end_learning_rate) · (1 − p / decay_steps)^power + end_learning_rate,
                          p = min(step, decay_steps)

Its decay counts from step 0, so at the end of warm-up the rate drops from ≈ learning_rate to the decay
curve's value at step warmup_steps (a jump of (1 − (1 − W/D)^power) of the range). That is
``decay_from_zero=True``. The default instead starts the decay where warm-up ends, so the curve is
continuous and peaks at learning_rate:

    p = min(step − warmup_steps, decay_steps − warmup_steps), divided by (decay_steps − warmup_steps).

Both reach end_learning_rate at step decay_steps and stay there. `step` counts updates already made (the
first update uses step 0, so lr = 0 with warm-up, as in the model zoo and Google's BERT). PolynomialDecayLR's
`update_decay_steps` (restarting the decay every decay_steps) is not offered: BERT never uses it.
"""

from __future__ import annotations

import functools

import torch

from bertforge.errors import BertforgeError


def warmup_poly_lr(
    step: int,
    *,
    learning_rate: float,
    end_learning_rate: float,
    warmup_steps: int,
    decay_steps: int,
    power: float,
    decay_from_zero: bool = False,
) -> float:
    """The learning rate for update number `step` (0-based); see the module docstring for the formula."""
    _check(learning_rate, end_learning_rate, warmup_steps, decay_steps, power)
    if step < 0:
        raise BertforgeError(f"learning-rate step must be >= 0, not {step}")
    if step < warmup_steps:
        return learning_rate * step / warmup_steps
    if decay_from_zero:
        done, span = min(step, decay_steps), decay_steps
    else:
        done, span = min(step - warmup_steps, decay_steps - warmup_steps), decay_steps - warmup_steps
    return (learning_rate - end_learning_rate) * (1 - done / span) ** power + end_learning_rate


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    learning_rate: float,
    end_learning_rate: float,
    warmup_steps: int,
    decay_steps: int,
    power: float,
    decay_from_zero: bool = False,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following `warmup_poly_lr`; call ``scheduler.step()`` after each optimizer step.

    LambdaLR multiplies each group's initial lr by warmup_poly_lr(step)/learning_rate, so a group created
    with lr = learning_rate follows the curve exactly. It sets the lr for step 0 on construction; its
    state_dict holds the step count (the schedule itself comes from the config, so a resumed run may
    change it).
    """
    _check(learning_rate, end_learning_rate, warmup_steps, decay_steps, power)
    factor = functools.partial(
        _factor,
        learning_rate=learning_rate,
        end_learning_rate=end_learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        power=power,
        decay_from_zero=decay_from_zero,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _factor(step: int, *, learning_rate: float, **schedule) -> float:
    return warmup_poly_lr(step, learning_rate=learning_rate, **schedule) / learning_rate


def _check(learning_rate: float, end_learning_rate: float, warmup_steps: int, decay_steps: int, power: float) -> None:
    if learning_rate <= 0:
        raise BertforgeError(f"learning_rate must be > 0, not {learning_rate}")
    if not 0 <= end_learning_rate <= learning_rate:
        raise BertforgeError(
            f"end_learning_rate must be in [0, learning_rate={learning_rate}], not {end_learning_rate}"
        )
    if power <= 0:
        raise BertforgeError(f"power must be > 0, not {power}")
    if warmup_steps < 0:
        raise BertforgeError(f"warmup_steps must be >= 0, not {warmup_steps}")
    if decay_steps <= warmup_steps:
        raise BertforgeError(
            f"decay_steps ({decay_steps}) must be larger than warmup_steps ({warmup_steps}): "
            f"it is the step where the learning rate reaches end_learning_rate"
        )
