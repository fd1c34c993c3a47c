import pytest
import torch
import torch.nn.functional as F

from bertforge.modeling import BertConfig
from bertforge.modeling.attention import BertSelfAttention
from bertforge.modeling.bert import extended_attention_mask
from bertforge.modeling.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = dropout(x, p, True)
    kept = (y > 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.003  # 400k samples: 5 standard errors
    assert abs(y.mean().item() - 1.0) < 0.01  # kept values are scaled to keep the expectation
    assert set(torch.unique(y).tolist()) <= {0.0, y.max().item()}


def test_backward_uses_the_forward_mask_and_seed_reproduces():
    x = torch.randn(64, 77, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.2, True)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad != 0, y != 0)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.2, True), y)
    torch.manual_seed(4)
    assert not torch.equal(dropout(x, 0.2, True), y)


def test_identity_when_not_training_and_module_state():
    x = torch.randn(5, 5)
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x) and torch.equal(dropout(x, 0.0, True), x)
    assert module.state_dict() == {}


def test_explicit_attention_equals_sdpa():
    torch.manual_seed(0)
    att = BertSelfAttention(BertConfig.from_preset("tiny")).eval()
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    mask = extended_attention_mask(torch.tensor([[1] * 9, [1] * 5 + [0] * 4]), torch.float32, 2, 9, None)
    ours = att._explicit_attention(q, k, v, mask, 0.0)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ours - ref).abs().max() < 1e-6
