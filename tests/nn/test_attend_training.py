"""bf16 attention for training on the CPU (`nn.low_precision.attend` with gradients): batched products instead of
torch's slow bf16 flash kernel, as precise as that kernel against float64 attention."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal.nn import low_precision


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach()  # the float64 reference carries its graph: a scalar of it warns
    return float((a - b).norm() / b.norm())


@pytest.fixture
def native(monkeypatch):
    """The path as on a CPU with bf16 instructions (on others, the same bf16 products, emulated)."""
    monkeypatch.setattr(low_precision, "native_bf16_cpu", lambda: True)


@pytest.mark.parametrize("kind", ["mask", "causal", "none"])
def test_bf16_training_attention_within_flash_error(native, kind):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=g) for _ in range(3))
    mask = None
    if kind == "mask":
        mask = (torch.rand(2, 1, 40, 40, generator=g) > 0.4) | torch.eye(40, dtype=torch.bool)
    causal = kind == "causal"
    go = torch.randn(2, 3, 40, 16, generator=g)

    def run(fn, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, attn_mask=mask, is_causal=causal)
        out.double().backward(go.double())
        return [out] + [t.grad for t in leaves]

    exact = run(F.scaled_dot_product_attention, torch.float64)
    ours = run(low_precision.attend, torch.bfloat16)
    flash = run(F.scaled_dot_product_attention, torch.bfloat16)
    for name, a, b, e in zip(("out", "dq", "dk", "dv"), ours, flash, exact):
        assert a.dtype == torch.bfloat16
        # bf16 rounding of the scores is the one extra error: within 1.6x the flash kernel's, and < 1e-2
        assert _rel(a, e) < max(1.6 * _rel(b, e), 2e-3) and _rel(a, e) < 1e-2, name


def test_bf16_training_does_not_call_the_flash_kernel(native, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("SDPA called")

    monkeypatch.setattr(low_precision.F, "scaled_dot_product_attention", refuse)
    q = torch.randn(1, 2, 8, 4, dtype=torch.bfloat16, requires_grad=True)
    low_precision.attend(q, q, q).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad.float()).all()
    monkeypatch.undo()
    # float32 keeps SDPA
    x = torch.randn(1, 2, 8, 4, requires_grad=True)
    torch.testing.assert_close(low_precision.attend(x, x, x), F.scaled_dot_product_attention(x, x, x))
