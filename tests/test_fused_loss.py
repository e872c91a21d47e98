"""The fused vocabulary projection + cross-entropy (``forward(logits=False)``) against the plain path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from polymodal.model import FourM, masked_modeling_loss
from polymodal.model.loss import linear_cross_entropy

from .conftest import random_batch, tiny_config


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_linear_cross_entropy_matches_cross_entropy(dtype: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 16, generator=g, requires_grad=True)
    w = (torch.randn(1000, 16, generator=g) * 2).requires_grad_()
    t = torch.randint(0, 1000, (37,), generator=g)
    t[:5] = 3  # repeated targets
    ac = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with ac:
        plain = F.cross_entropy(F.linear(x, w).float(), t, reduction="sum") * 0.7
    gx, gw = torch.autograd.grad(plain, (x, w))
    with ac:
        fused = linear_cross_entropy(x, w, t) * 0.7
    fx, fw = torch.autograd.grad(fused, (x, w))
    assert fused.dtype == torch.float32 and fx.dtype == x.dtype and fw.dtype == w.dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "fp32" else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(fused, plain, **tol)
    torch.testing.assert_close(fx, gx, **tol)
    torch.testing.assert_close(fw, gw, **tol)


def test_linear_cross_entropy_float64_exact():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(300, 8, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 300, (20,), generator=g)
    assert torch.autograd.gradcheck(lambda a, b: linear_cross_entropy(a, b, t), (x, w))
    ref = F.cross_entropy(x @ w.t(), t, reduction="sum")
    torch.testing.assert_close(linear_cross_entropy(x, w, t), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighting", ["modality", "token"])
def test_model_loss_without_logits_equals_plain(weighting: str):
    torch.manual_seed(0)
    model = FourM(tiny_config())
    other = copy.deepcopy(model)
    batch = random_batch(4, seed=3)
    plain, per_mod = masked_modeling_loss(model(batch), weighting=weighting)
    plain.backward()
    out = other(batch, logits=False)
    assert all(o.logits is None and o.hidden.shape[0] == int(o.valid.sum()) for o in out.values())
    fused, per_mod_fused = masked_modeling_loss(out, weighting=weighting)
    fused.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for k in per_mod:
        torch.testing.assert_close(per_mod_fused[k], per_mod[k], rtol=1e-6, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
