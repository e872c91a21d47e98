"""`optim.clip_and_step`: clipping folded into fused AdamW's grad_scale is torch's clip_grad_norm_ then AdamW."""

import pytest
import torch

from polymodal.train.optim import clip_and_step


def _pair(fused: bool, scale: float):
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    grads = [torch.randn_like(p) * scale for p in ps]
    out = []
    for _ in range(2):
        qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        for q, g in zip(qs, grads):
            q.grad = g.clone()
        out.append((qs, torch.optim.AdamW(qs, lr=1e-2, weight_decay=0.05, fused=fused or None)))
    return out


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (0.01, 1.0), (10.0, float("inf"))])
def test_clip_and_step_equals_clip_then_adamw(fused, scale, max_norm):
    (mine, opt), (ref, ref_opt) = _pair(fused, scale)
    for _ in range(3):  # grads kept: each step clips the (already clipped) gradients again
        norm = clip_and_step(opt, mine, max_norm)
        ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
        ref_opt.step()
        torch.testing.assert_close(norm, ref_norm)
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # 1/coef as a divisor: rounding only
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)  # stored clipped, as torch's
    assert not hasattr(opt, "grad_scale")  # the fold leaves no scale behind for the next step


def test_clip_and_step_clips_at_all():
    (mine, opt), _ = _pair(True, 10.0)
    before = torch.cat([p.grad.flatten() for p in mine]).norm()
    norm = clip_and_step(opt, mine, 1.0)
    assert norm == pytest.approx(before.item()) and before > 10
    assert torch.cat([p.grad.flatten() for p in mine]).norm() == pytest.approx(1.0, rel=1e-5)
