"""bf16 autocast products by float32 kernels (nn.gemm) against torch's bf16 kernels."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.model import FourM, masked_modeling_loss
from polymodal.nn.gemm import bf16_gemm_in_fp32

from .conftest import random_batch, tiny_config

BF16 = dict(rtol=1 / 64, atol=1e-3)  # a bf16 ulp is 1/128 relative; sums in another order may round the other way


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_linear_matches_bf16_autocast():
    torch.manual_seed(0)
    lin = nn.Linear(96, 200)
    x = torch.randn(3, 50, 96, requires_grad=True)
    with _autocast():
        ref = lin(x)
    ref_grads = torch.autograd.grad(ref.float().square().sum(), (x, lin.weight, lin.bias))
    with _autocast(), bf16_gemm_in_fp32(True):
        out = lin(x)
    grads = torch.autograd.grad(out.float().square().sum(), (x, lin.weight, lin.bias))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, **BF16)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype
        torch.testing.assert_close(g, r, rtol=2e-2, atol=2e-2 * float(r.abs().max()))


def test_attention_matches_bf16_autocast():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 30, 16, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 30, 30) > 0.3
    mask |= torch.eye(30, dtype=torch.bool)
    outs = []
    for emulate in (False, True):
        with _autocast(), bf16_gemm_in_fp32(emulate):
            o = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask)
        outs.append((o, torch.autograd.grad(o.float().square().sum(), (q, k, v))))
    (ref, ref_g), (out, g) = outs
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=1e-2)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))


def test_off_outside_bf16_autocast():
    """Outside autocast, and under float16 autocast, the context changes nothing: the same values, bit for bit, as
    without it (a float32 product of bf16-rounded operands would differ from the plain one in the 3rd digit)."""
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    plain = lin(x), F.scaled_dot_product_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.float16):
        half = lin(x), F.scaled_dot_product_attention(q.half(), k.half(), v.half())
    with bf16_gemm_in_fp32(True):
        ours = lin(x), F.scaled_dot_product_attention(q, k, v)
        with torch.autocast("cpu", dtype=torch.float16):
            ours_half = lin(x), F.scaled_dot_product_attention(q.half(), k.half(), v.half())
    for a, b in zip((*plain, *half), (*ours, *ours_half)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert plain[0].dtype == torch.float32 and half[0].dtype == torch.float16


def test_model_loss_and_gradients_match_bf16_autocast():
    torch.manual_seed(0)
    model = FourM(tiny_config())
    other = copy.deepcopy(model)
    batch = random_batch(4, seed=2)
    with _autocast():
        ref = masked_modeling_loss(model(batch))[0]
    ref.backward()
    with _autocast(), bf16_gemm_in_fp32(True):
        loss = masked_modeling_loss(other(batch, logits=False))[0]
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=1e-2)
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        err = (q.grad - p.grad).norm() / p.grad.norm().clamp(min=1e-12)
        assert err < 5e-2, f"{name}: relative gradient error {err:.3g}"
