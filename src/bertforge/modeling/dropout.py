"""Dropout that draws its random bits four at a time on the CPU.

`torch.nn.Dropout` on the CPU draws one Bernoulli sample per element from the Mersenne Twister, which made
dropout ~8% of a BERT-base training step here. This draws 64-bit random words and uses each as four
16-bit uniforms: an element is kept when its uniform is above round(p·65536)/65536, so the drop rate is p
to within 1/131072 and kept values are scaled by 1/(1 − that rate), keeping the expectation exact. On
other devices (CUDA's Philox dropout is fast) and at p = 0 or 1 it is `torch.nn.functional.dropout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


class _CpuDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        dropped = round(p * _LEVELS)  # elements whose 16-bit uniform falls below this many levels are dropped
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) >= dropped - _LEVELS // 2
        scale = _LEVELS / (_LEVELS - dropped)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or round(p * _LEVELS) == 0:
        return F.dropout(x, p, training)
    return _CpuDropout.apply(x, p)


class Dropout(nn.Dropout):
    """`nn.Dropout` with the faster CPU sampling above (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
