"""Optimizers for BERT pretraining (LAMB, AdamW, Momentum), the decay / no-decay split and gradient clipping.

Every update is multi-tensor: one ``torch._foreach_*`` call per operation over all tensors of a parameter
group, so a BERT-base step launches a few dozen kernels instead of a few thousand. Moments and parameters
keep the parameters' dtype (fp32 master weights; mixed precision lives in autocast, not here).

Formulas, with t the 1-based step of a tensor, g its gradient and wd its group's weight decay:

    m = β1·m + (1−β1)·g            v = β2·v + (1−β2)·g²                  (Kingma & Ba 2015, Alg. 1)
    m̂ = m / (1−β1^t)               v̂ = v / (1−β2^t)                      (m̂ = m, v̂ = v without bias correction)
    u = m̂ / (√v̂ + eps) + wd·w                                            (decoupled decay, Loshchilov & Hutter 2019)
    AdamW:  w ← w − lr·u
    LAMB:   w ← w − lr·r·u,   r = ‖w‖ / ‖u‖, or 1 when ‖w‖ = 0 or ‖u‖ = 0  (You et al. 2020, Alg. 2, φ = identity)

The no-decay group (LayerNorm and bias tensors) has wd = 0, so there u is the plain Adam direction; LAMB
still applies the trust ratio to it, as the model zoo's Lamb and NVIDIA's LAMB do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from bertforge.errors import BertforgeError

# Google's BERT and the MindSpore model zoo exclude these from weight decay (matched case-insensitively,
# as the model zoo's decay_filter does, so both HF's `LayerNorm` and `layernorm` names match).
NO_DECAY_MARKERS = ("layernorm", "bias")
OPTIMIZERS = ("lamb", "adamw", "momentum")
CLIP_MODES = ("global", "per_tensor")


def param_groups(
    model: nn.Module, weight_decay: float, lr_multipliers: dict[str, float] | None = None, lr: float | None = None
) -> list[dict]:
    """Split the trainable parameters into a decayed group and a no-decay group (LayerNorm, bias), and apart
    again by learning-rate multiplier: `lr_multipliers` maps a parameter-name prefix (e.g. "crf.") to a
    multiple of `lr` for those parameters (a CRF head learning faster than the encoder).

    `named_parameters` yields a tied parameter (the MLM decoder sharing the word embeddings) once, under its
    first name. Each group carries `param_names` (stored by torch.optim in its state_dict); an empty group
    is left out.
    """
    multipliers = lr_multipliers or {}
    groups: dict[tuple[bool, float], dict[str, nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = any(marker in name.lower() for marker in NO_DECAY_MARKERS)
        scale = next((m for prefix, m in multipliers.items() if name.startswith(prefix)), 1.0)
        groups.setdefault((exempt, scale), {})[name] = param
    out = []
    for (exempt, scale), params in sorted(groups.items(), key=lambda item: (item[0][1] != 1.0, item[0][0])):
        group = {
            "params": list(params.values()),
            "param_names": list(params),
            "weight_decay": 0.0 if exempt else weight_decay,
        }
        if scale != 1.0:
            if lr is None:
                raise BertforgeError("learning-rate multipliers need the base learning rate")
            group |= {"lr": lr * scale, "lr_multiplier": scale}
        out.append(group)
    return out


def describe_groups(groups: torch.optim.Optimizer | Sequence[dict]) -> str:
    """One line per group, e.g. ``weight_decay=0.01: 74 tensors, 85,054,464 parameters``, for the run log."""
    if isinstance(groups, torch.optim.Optimizer):
        groups = groups.param_groups
    lines = []
    for group in groups:
        params = list(group["params"])
        lines.append(
            f"weight_decay={group['weight_decay']:g}"
            + (f", lr ×{group['lr_multiplier']:g}" if "lr_multiplier" in group else "")
            + f": {len(params)} tensors, {sum(p.numel() for p in params):,} parameters"
        )
    return "\n".join(lines)


def _check(value: float, name: str, ok: Callable[[float], bool], expected: str) -> None:
    if not ok(value):
        raise BertforgeError(f"optimizer {name} must be {expected}, not {value}")


def _check_adam_args(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    _check(lr, "learning rate", lambda x: x >= 0, ">= 0")
    for i, beta in enumerate(betas, 1):
        _check(beta, f"beta{i}", lambda x: 0 <= x < 1, "in [0, 1)")
    _check(eps, "eps", lambda x: x > 0, "> 0")
    _check(weight_decay, "weight_decay", lambda x: x >= 0, ">= 0")


def _gather(
    optimizer: torch.optim.Optimizer, group: dict, keys: tuple[str, ...]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict]]:
    """The group's parameters that have a gradient, those gradients, and each one's state.

    A new state gets zero tensors under `keys` and ``step = 0``; parameters without a gradient are
    skipped and keep their state, as in torch.optim.
    """
    params, grads, states = [], [], []
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:  # e.g. tied embeddings when the loss skipped the MLM head this step
            param.grad = param.grad.to_dense()
        state = optimizer.state[param]
        if not state:
            state["step"] = 0
            for key in keys:
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        params.append(param)
        grads.append(param.grad)
        states.append(state)
    return params, grads, states


def _adam_update(group: dict, grads: list[torch.Tensor], states: list[dict]) -> list[torch.Tensor]:
    """Advance the moments in place and return u = m̂ / (√v̂ + eps) per tensor (new tensors)."""
    beta1, beta2 = group["betas"]
    exp_avgs = [state["exp_avg"] for state in states]
    exp_avg_sqs = [state["exp_avg_sq"] for state in states]
    for state in states:
        state["step"] += 1
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # β1·m + (1−β1)·g
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    if group["bias_correction"]:
        # √v̂ = √v / √(1−β2^t) and m̂ = m / (1−β1^t): per-tensor scalars, so tensors with different
        # step counts (a parameter that sometimes has no gradient) stay exact.
        torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** state["step"]) for state in states])
    torch._foreach_add_(denom, group["eps"])
    update = torch._foreach_div(exp_avgs, denom)
    if group["bias_correction"]:
        torch._foreach_div_(update, [1 - beta1 ** state["step"] for state in states])
    return update


class _AdamFamily(torch.optim.Optimizer):
    """What LAMB and AdamW share: the hyper-parameters, their checks, and the walk over parameter groups."""

    def __init__(
        self,
        params: Iterable,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
    ):
        _check_adam_args(lr, betas, eps, weight_decay)
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = _gather(self, group, ("exp_avg", "exp_avg_sq"))
            if params:
                self._update(group, params, grads, states)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict]) -> None:
        raise NotImplementedError


class Lamb(_AdamFamily):
    """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", Alg. 2 with φ = identity).

    u = m̂/(√v̂+eps) + wd·w; w ← w − lr·r·u with the trust ratio r = ‖w‖/‖u‖ (r = 1 if either norm is 0),
    applied to every tensor, decayed or not. This is the model zoo's Lamb as its Ascend kernel computes it
    (LambApplyOptimizerAssign + LambApplyWeightAssign). Its GPU/CPU fallback differs in three quirks we do
    not copy: ‖u‖ uses m̂·rsqrt(v̂+eps) instead of m̂/(√v̂+eps), the guard tests ‖g‖ instead of ‖u‖, and r
    is clipped to [0, 10].
    """

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict]) -> None:
        update = _adam_update(group, grads, states)
        if group["weight_decay"] != 0:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        w_norm = torch.stack(torch._foreach_norm(params))
        u_norm = torch.stack(torch._foreach_norm(update))
        ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
        torch._foreach_mul_(update, list(ratio.unbind()))
        torch._foreach_add_(params, update, alpha=-group["lr"])


class AdamW(_AdamFamily):
    """Adam with decoupled weight decay, decay added to the update: w ← w − lr·(m̂/(√v̂+eps) + wd·w).

    That is the form of Google's AdamWeightDecayOptimizer and the model zoo's AdamWeightDecay; per step it
    equals torch.optim.AdamW's w ← w·(1 − lr·wd) − lr·m̂/(√v̂+eps). ``bias_correction=False`` drops the
    1−β^t divisors, which reproduces those two (neither corrects the bias).
    """

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict]) -> None:
        if group["bias_correction"] and len({(p.device, p.dtype) for p in params}) == 1:
            self._fused_step(group, params, grads, states)
            return
        update = _adam_update(group, grads, states)
        if group["weight_decay"] != 0:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, update, alpha=-group["lr"])

    @staticmethod
    def _fused_step(group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict]) -> None:
        """The same update through PyTorch's fused AdamW kernel: one pass over memory per tensor instead of
        ~10 foreach passes with temporaries (and fewer than torch.optim.AdamW's default foreach path): the
        optimizer step is bound by memory traffic (benchmarks/RESULTS.md)."""
        beta1, beta2 = group["betas"]
        for state in states:
            state["step"] += 1
        steps = [torch.tensor(float(state["step"]), device=params[0].device) for state in states]
        torch._fused_adamw_(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


class Momentum(torch.optim.Optimizer):
    """Heavy-ball momentum as MindSpore's nn.Momentum (ApplyMomentum): v ← μ·v + (g + wd·w); w ← w − lr·v.

    No dampening, no Nesterov (the model zoo never enables it); the same as torch.optim.SGD with
    ``dampening=0`` since v starts at 0. Weight decay is folded into the gradient (L2), as MindSpore's
    Optimizer.decay_weight does.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        _check(lr, "learning rate", lambda x: x >= 0, ">= 0")
        _check(momentum, "momentum", lambda x: 0 <= x < 1, "in [0, 1)")
        _check(weight_decay, "weight_decay", lambda x: x >= 0, ">= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = _gather(self, group, ("momentum_buffer",))
            if not params:
                continue
            for state in states:
                state["step"] += 1
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            buffers = [state["momentum_buffer"] for state in states]
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads)
            torch._foreach_add_(params, buffers, alpha=-group["lr"])
        return loss


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    eps: float = 1e-6,
    betas: tuple[float, float] = (0.9, 0.999),
    bias_correction: bool = True,
    momentum: float = 0.9,
    lr_multipliers: dict[str, float] | None = None,
) -> torch.optim.Optimizer:
    """The named optimizer over `param_groups(model, weight_decay, lr_multipliers)`; options a method lacks
    are ignored."""
    groups = param_groups(model, weight_decay, lr_multipliers, lr)
    if not groups:
        raise BertforgeError("the model has no trainable parameters")
    if name == "lamb":
        return Lamb(groups, lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
    if name == "adamw":
        return AdamW(groups, lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
    if name == "momentum":
        return Momentum(groups, lr, momentum=momentum, weight_decay=weight_decay)
    raise BertforgeError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float, mode: str = "global") -> torch.Tensor:
    """Clip gradients in place and return their global L2 norm before clipping (0-dim tensor, no sync).

    "global": g ← g·max_norm/(‖G‖+1e-6) when that factor is < 1, ‖G‖ the norm of all gradients together
    (torch.nn.utils.clip_grad_norm_; Google's BERT clips by global norm 1.0). "per_tensor": each gradient
    separately, g ← g·max_norm/max(‖g‖, max_norm) — MindSpore's nn.ClipByNorm, which the model zoo's
    pretraining cells apply with clip value 1.0. ``max_norm <= 0`` only measures.
    """
    if mode not in CLIP_MODES:
        raise BertforgeError(f"clip mode must be one of {', '.join(CLIP_MODES)}, not {mode!r}")
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    grads = [p.grad for p in params]
    if max_norm <= 0:
        return nn.utils.get_total_norm(grads, foreach=True)
    if mode == "global":
        return nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    norms = torch.stack(torch._foreach_norm(grads))
    torch._foreach_mul_(grads, list((max_norm / norms.clamp(min=max_norm)).unbind()))
    return torch.linalg.vector_norm(norms)
