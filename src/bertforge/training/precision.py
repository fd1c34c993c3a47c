"""Mixed precision: the autocast context for a precision name, and dynamic loss scaling for fp16.

The loss scaler follows the MindSpore model zoo's DynamicLossScaleUpdateCell (mindspore/nn/wrap/loss_scale.py):
the loss is multiplied by the scale before backward; a step whose gradients hold inf/nan is skipped and the
scale divided by `scale_factor` (never below 1); after `scale_window` overflow-free steps in a row it is
multiplied by `scale_factor`. Unlike the model zoo, a run that keeps overflowing stops with an error
instead of silently training nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch

from bertforge.errors import BertforgeError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` for "bf16"/"fp16" on `device_type` ("cuda", "cpu"), a no-op context for "fp32".

    torch 2.13 autocasts both bf16 and fp16 on CPU as well as CUDA (fp16 on CPU is slow but correct).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in AUTOCAST_DTYPES:
        raise BertforgeError(f"precision must be one of fp32, {', '.join(AUTOCAST_DTYPES)}, not {precision!r}")
    if not torch.amp.is_autocast_available(device_type):
        raise BertforgeError(f"{precision} mixed precision is not available on device type {device_type!r}; use fp32")
    return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])


class DynamicLossScaler:
    """Loss scale for fp16 training; with ``enabled=False`` (fp32, bf16) every method is a no-op.

    Per step: ``scaler.scale(loss).backward()``; ``found_inf = scaler.unscale_and_check(optimizer)``;
    clip; ``optimizer.step()`` only if not found_inf; ``scaler.update(found_inf)``.
    """

    def __init__(
        self,
        init_scale: float = 65536.0,
        scale_factor: float = 2.0,
        scale_window: int = 1000,
        max_consecutive_overflows: int = 50,
        enabled: bool = True,
    ):
        if init_scale < 1:
            raise BertforgeError(f"init_scale must be >= 1, not {init_scale}")
        if scale_factor <= 1:
            raise BertforgeError(f"scale_factor must be > 1, not {scale_factor}")
        if scale_window < 1 or max_consecutive_overflows < 1:
            raise BertforgeError(
                f"scale_window ({scale_window}) and max_consecutive_overflows "
                f"({max_consecutive_overflows}) must be >= 1"
            )
        self.scale_factor = float(scale_factor)
        self.scale_window = scale_window
        self.max_consecutive_overflows = max_consecutive_overflows
        self.enabled = enabled
        self.loss_scale = float(init_scale) if enabled else 1.0
        self.good_steps = 0  # overflow-free steps since the scale last changed (or overflowed)
        self.consecutive_overflows = 0
        self.skipped = 0  # steps skipped for overflow over the whole run

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """loss · loss_scale, to call backward on."""
        return loss * self.loss_scale if self.enabled else loss

    def unscale_and_check(self, target: torch.optim.Optimizer | Iterable[torch.Tensor]) -> bool:
        """Divide the gradients of `target` (an optimizer's params, or parameters) by the scale, in place.

        Returns True when any gradient holds inf or nan: the caller must then skip optimizer.step().
        One host sync per device (normally one), for that answer.
        """
        if not self.enabled:
            return False
        if isinstance(target, torch.optim.Optimizer):
            target = (p for group in target.param_groups for p in group["params"])
        by_device: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for param in target:
            if param.grad is not None:
                by_device.setdefault((param.grad.device, param.grad.dtype), []).append(param.grad)
        found = []
        for (device, _), grads in by_device.items():
            found_inf = torch.zeros(1, device=device)
            inv_scale = torch.full((1,), 1.0 / self.loss_scale, device=device)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
            found.append(found_inf)
        return any(bool(f.item()) for f in found)

    def update(self, found_inf: bool) -> None:
        """Adjust the scale after a step; raise after `max_consecutive_overflows` overflows in a row."""
        if not self.enabled:
            return
        if found_inf:
            self.loss_scale = max(self.loss_scale / self.scale_factor, 1.0)
            self.good_steps = 0
            self.skipped += 1
            self.consecutive_overflows += 1
            if self.consecutive_overflows >= self.max_consecutive_overflows:
                raise BertforgeError(
                    f"{self.consecutive_overflows} consecutive steps overflowed in fp16 (loss scale now "
                    f"{self.loss_scale:g}); lower the learning rate or use bf16"
                )
            return
        self.consecutive_overflows = 0
        self.good_steps += 1
        if self.good_steps >= self.scale_window:
            self.loss_scale *= self.scale_factor
            self.good_steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_scale": self.loss_scale,
            "good_steps": self.good_steps,
            "consecutive_overflows": self.consecutive_overflows,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_scale = float(state["loss_scale"])
        self.good_steps = int(state["good_steps"])
        self.consecutive_overflows = int(state["consecutive_overflows"])
        self.skipped = int(state["skipped"])
