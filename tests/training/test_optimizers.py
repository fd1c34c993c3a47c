"""Optimizers against direct per-tensor formula implementations (float64) and torch.optim where one exists."""

import copy
import math

import pytest
import torch
from torch import nn

from bertforge.errors import BertforgeError
from bertforge.training.optimizers import (
    AdamW,
    Lamb,
    Momentum,
    build_optimizer,
    clip_gradients,
    describe_groups,
    param_groups,
)

STEPS = 5
LRS = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2]  # changes every step, so a stale lr would show
WD = 0.1


class Tiny(nn.Module):
    """HF-style names: decayed weights, LayerNorm/bias exempt, a tied decoder and a frozen tensor."""

    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(10, 4)
        self.dense = nn.Linear(4, 4)
        self.LayerNorm = nn.LayerNorm(4)
        self.final_layernorm = nn.LayerNorm(4)
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.word_embeddings.weight
        self.frozen = nn.Parameter(torch.ones(3), requires_grad=False)


def test_param_groups_split_and_counts():
    groups = param_groups(Tiny(), 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert groups[0]["param_names"] == ["word_embeddings.weight", "dense.weight"]  # tied decoder once
    assert groups[1]["param_names"] == [
        "dense.bias",
        "LayerNorm.weight",
        "LayerNorm.bias",
        "final_layernorm.weight",
        "final_layernorm.bias",
    ]
    assert describe_groups(groups) == (
        "weight_decay=0.01: 2 tensors, 56 parameters\nweight_decay=0: 5 tensors, 20 parameters"
    )
    optimizer = build_optimizer("lamb", Tiny(), lr=1e-3, weight_decay=0.01)
    assert describe_groups(optimizer) == describe_groups(groups)


def test_param_groups_on_bert_names():
    from bertforge.modeling.config import BertConfig
    from bertforge.modeling.heads import BertForPreTraining

    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    model = BertForPreTraining(config)
    decay, no_decay = param_groups(model, 0.01)
    assert all("LayerNorm" not in n and "bias" not in n for n in decay["param_names"])
    assert all("LayerNorm" in n or "bias" in n for n in no_decay["param_names"])
    names = decay["param_names"] + no_decay["param_names"]
    assert len(names) == len(set(names)) == len(dict(model.named_parameters()))


def make_case(seed: int = 0):
    """float64 tensors, split into a decayed and a no-decay group, and STEPS gradients for each.

    Includes a zero decayed tensor (‖w‖ = 0 at the first step) and a no-decay tensor whose gradient is
    always zero (u = 0, so LAMB's ‖u‖ = 0 guard is exercised and the tensor must not move).
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = {
        "dense.weight": (4, 3),
        "zero.weight": (5,),
        "dense.bias": (3,),
        "LayerNorm.weight": (3,),
        "still.bias": (2,),
    }
    init = {n: torch.randn(s, generator=gen, dtype=torch.float64) for n, s in shapes.items()}
    init["zero.weight"].zero_()
    grads = [{n: torch.randn(s, generator=gen, dtype=torch.float64) for n, s in shapes.items()} for _ in range(STEPS)]
    for g in grads:
        g["still.bias"].zero_()
    decay = ["dense.weight", "zero.weight"]
    return init, grads, decay


def run_ours(make_opt, init, grads, decay):
    params = {n: nn.Parameter(t.clone()) for n, t in init.items()}
    groups = [
        {"params": [params[n] for n in params if n in decay], "weight_decay": WD},
        {"params": [params[n] for n in params if n not in decay], "weight_decay": 0.0},
    ]
    opt = make_opt(groups)
    for lr, step_grads in zip(LRS, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        for n, p in params.items():
            p.grad = step_grads[n].clone()
        opt.step()
    return {n: p.detach() for n, p in params.items()}


def reference_adam(init, grads, decay, *, lamb: bool, bias_correction: bool, betas=(0.9, 0.999), eps=1e-6, ratios=None):
    """LAMB / AdamW written out per tensor, straight from the formulas in the optimizers module docstring.
    `ratios`, a list, receives every LAMB trust ratio used."""
    b1, b2 = betas
    w = {n: t.clone() for n, t in init.items()}
    m = {n: torch.zeros_like(t) for n, t in init.items()}
    v = {n: torch.zeros_like(t) for n, t in init.items()}
    for t, (lr, step_grads) in enumerate(zip(LRS, grads), 1):
        for n in w:
            g = step_grads[n]
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat = m[n] / (1 - b1**t) if bias_correction else m[n]
            v_hat = v[n] / (1 - b2**t) if bias_correction else v[n]
            u = m_hat / (v_hat.sqrt() + eps) + (WD if n in decay else 0.0) * w[n]
            ratio = 1.0
            if lamb:
                w_norm, u_norm = math.sqrt(float((w[n] ** 2).sum())), math.sqrt(float((u**2).sum()))
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
                if ratios is not None:
                    ratios.append(ratio)
            w[n] = w[n] - lr * ratio * u
    return w


def assert_same(ours, expected):
    for n in expected:
        torch.testing.assert_close(ours[n], expected[n], rtol=1e-12, atol=1e-14, msg=n)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_matches_formula(bias_correction):
    init, grads, decay = make_case()
    ours = run_ours(lambda g: Lamb(g, lr=0.0, bias_correction=bias_correction), init, grads, decay)
    assert_same(ours, reference_adam(init, grads, decay, lamb=True, bias_correction=bias_correction))
    torch.testing.assert_close(ours["still.bias"], init["still.bias"], rtol=0, atol=0)
    assert not torch.equal(ours["zero.weight"], init["zero.weight"])


def test_lamb_trust_ratio_is_not_clipped():
    """Large weights with small Adam steps: trust ratios far above 10 (the clip of the model zoo's GPU fallback,
    which bertforge does not copy) must be applied as they are. In the decayed group wd·w bounds the ratio
    near 1/wd = 10, so the no-decay tensors carry the large ratios."""
    init, grads, decay = make_case(6)
    init = {n: t * 200 for n, t in init.items()}
    ratios = []
    expected = reference_adam(init, grads, decay, lamb=True, bias_correction=True, ratios=ratios)
    assert max(ratios) > 100
    assert_same(run_ours(lambda g: Lamb(g, lr=0.0), init, grads, decay), expected)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adamw_matches_formula(bias_correction):
    init, grads, decay = make_case(1)
    ours = run_ours(lambda g: AdamW(g, lr=0.0, bias_correction=bias_correction), init, grads, decay)
    assert_same(ours, reference_adam(init, grads, decay, lamb=False, bias_correction=bias_correction))


def test_adamw_equals_torch_adamw():
    init, grads, decay = make_case(2)
    ours = run_ours(lambda g: AdamW(g, lr=0.0, betas=(0.8, 0.99), eps=1e-6), init, grads, decay)
    theirs = run_ours(lambda g: torch.optim.AdamW(g, lr=0.0, betas=(0.8, 0.99), eps=1e-6), init, grads, decay)
    assert_same(ours, theirs)


def test_momentum_matches_formula_and_torch_sgd():
    init, grads, decay = make_case(3)
    ours = run_ours(lambda g: Momentum(g, lr=0.0, momentum=0.9), init, grads, decay)
    w = {n: t.clone() for n, t in init.items()}
    acc = {n: torch.zeros_like(t) for n, t in init.items()}
    for lr, step_grads in zip(LRS, grads):
        for n in w:
            acc[n] = 0.9 * acc[n] + step_grads[n] + (WD if n in decay else 0.0) * w[n]
            w[n] = w[n] - lr * acc[n]
    assert_same(ours, w)
    sgd = run_ours(lambda g: torch.optim.SGD(g, lr=0.0, momentum=0.9), init, grads, decay)
    assert_same(ours, sgd)


def test_parameter_without_grad_is_untouched_and_state_dict_round_trips():
    init, grads, decay = make_case(4)
    params = [nn.Parameter(init["dense.weight"].clone()), nn.Parameter(init["dense.bias"].clone())]
    opt = Lamb(params, lr=1e-2)
    params[0].grad = grads[0]["dense.weight"].clone()
    opt.step()
    assert torch.equal(params[1], init["dense.bias"]) and params[1] not in opt.state
    clone = Lamb([nn.Parameter(p.detach().clone()) for p in params], lr=1e-2)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))  # as after torch.save/load: no shared tensors
    for p, q in zip(params, clone.param_groups[0]["params"]):
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
    opt.step()
    clone.step()
    for p, q in zip(params, clone.param_groups[0]["params"]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_build_optimizer_and_errors():
    assert isinstance(build_optimizer("adamw", Tiny(), 1e-3, 0.01, bias_correction=False), AdamW)
    momentum = build_optimizer("momentum", Tiny(), 1e-3, 0.0, betas=(0.9, 0.98), momentum=0.8)
    assert isinstance(momentum, Momentum) and momentum.defaults["momentum"] == 0.8
    with pytest.raises(BertforgeError, match="unknown optimizer 'sgd'"):
        build_optimizer("sgd", Tiny(), 1e-3, 0.01)
    with pytest.raises(BertforgeError, match="beta2"):
        Lamb(Tiny().parameters(), lr=1e-3, betas=(0.9, 1.0))


def clip_case():
    gen = torch.Generator().manual_seed(5)
    params = [nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in [(3, 4), (4,), (2,)]]
    for p, scale in zip(params, [3.0, 0.1, 2.0]):
        p.grad = scale * torch.randn(p.shape, generator=gen, dtype=torch.float64)
    params.append(nn.Parameter(torch.zeros(2, dtype=torch.float64)))  # no grad: ignored
    return params


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_clip_gradients_matches_direct_computation(mode):
    params = clip_case()
    before = [p.grad.clone() for p in params[:3]]
    norms = [math.sqrt(float((g**2).sum())) for g in before]
    total = math.sqrt(sum(n**2 for n in norms))
    result = clip_gradients(params, 1.0, mode)
    assert math.isclose(float(result), total, rel_tol=1e-12)
    for g, n, p in zip(before, norms, params):
        factor = min(1.0, 1.0 / (total + 1e-6)) if mode == "global" else 1.0 / max(n, 1.0)
        torch.testing.assert_close(p.grad, g * factor, rtol=1e-12, atol=0)
    if mode == "per_tensor":  # the small tensor is left alone, the large ones end at norm 1
        assert torch.equal(params[1].grad, before[1])
        assert math.isclose(float(params[0].grad.norm()), 1.0, rel_tol=1e-12)


def test_clip_gradients_disabled_only_measures():
    params = clip_case()
    before = [p.grad.clone() for p in params[:3]]
    result = clip_gradients(params, 0.0, "global")
    assert math.isclose(float(result), math.sqrt(sum(float((g**2).sum()) for g in before)), rel_tol=1e-12)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, before))
    with pytest.raises(BertforgeError, match="clip mode"):
        clip_gradients(params, 1.0, "value")


def test_learning_rate_multipliers_give_a_head_its_own_rate_through_the_schedule():
    from bertforge.modeling import BertConfig, BertForTokenClassification
    from bertforge.training.optimizers import build_optimizer, describe_groups
    from bertforge.training.schedule import build_scheduler

    model = BertForTokenClassification(BertConfig.from_preset("tiny", vocab_size=50, num_labels=5, use_crf=True))
    optimizer = build_optimizer("adamw", model, lr=1e-3, weight_decay=0.01, lr_multipliers={"crf.": 20.0})
    crf = [g for g in optimizer.param_groups if any(n.startswith("crf.") for n in g["param_names"])]
    rest = [g for g in optimizer.param_groups if g not in crf]
    assert len(crf) == 1 and sorted(crf[0]["param_names"]) == ["crf.end_transitions", "crf.start_transitions",
                                                               "crf.transitions"]  # fmt: skip
    assert all(not any(n.startswith("crf.") for n in g["param_names"]) for g in rest)
    scheduler = build_scheduler(optimizer, learning_rate=1e-3, end_learning_rate=0.0, warmup_steps=2, decay_steps=10,
                                power=1.0, decay_from_zero=False)  # fmt: skip
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        assert crf[0]["lr"] == pytest.approx(20 * rest[0]["lr"])
    assert "lr ×20: 3 tensors" in describe_groups(optimizer)
