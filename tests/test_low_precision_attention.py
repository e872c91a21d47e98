"""`nn.low_precision.attend`: SDPA itself in float32, and in bfloat16 inference the attention SDPA computes, up to
bf16 rounding of the scores (with gradients: tests/nn/test_attend_training.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal.nn import low_precision
from polymodal.nn.low_precision import attend


def _qkv(dtype, b=2, h=3, n=7, m=9, d=16):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(b, h, s, d, generator=g).to(dtype) for s in (n, m, m))


def test_float32_is_sdpa_bit_for_bit():
    q, k, v = _qkv(torch.float32)
    mask = torch.rand(2, 1, 7, 9, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True
    assert torch.equal(attend(q, k, v, attn_mask=mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("case", ["plain", "mask", "causal", "causal+mask"])
def test_bf16_inference_matches_float32_attention(monkeypatch, case):
    monkeypatch.setattr(low_precision, "native_bf16_cpu", lambda: True)  # take the bf16 path on any CPU
    q, k, v = _qkv(torch.bfloat16, n=9)
    mask = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True
    kw = {"attn_mask": mask if "mask" in case else None, "is_causal": case.startswith("causal")}
    ref_mask = kw["attn_mask"]
    if kw["is_causal"]:  # SDPA refuses a mask with is_causal: the oracle gets the combined mask
        tril = torch.ones(9, 9, dtype=torch.bool).tril()
        ref_mask = tril if ref_mask is None else ref_mask & tril
    with torch.no_grad():
        out = attend(q, k, v, **kw)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=ref_mask)
    assert out.dtype == torch.bfloat16
    # bf16 scores (|s| < ~8: one ulp 1/32) and probabilities: a few bf16 ulps of the output
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.05)
    assert float((out.float() - ref).abs().mean()) < 0.01



@pytest.mark.parametrize("grad", [False, True])
def test_large_bf16_inference_goes_to_sdpa_and_training_stays(monkeypatch, grad):
    """Over MAX_INFERENCE_SCORES scores, inference takes SDPA (the flash kernel never holds them); with gradients
    the bf16 products stay (the flash kernel's backward is slow); under the limit inference stays too."""
    monkeypatch.setattr(low_precision, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(low_precision, "MAX_INFERENCE_SCORES", 2 * 3 * 7 * 9 - 1)  # _qkv's scores: one over
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(low_precision.F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = (t.requires_grad_(grad) for t in _qkv(torch.bfloat16))
    with torch.set_grad_enabled(grad):
        attend(q, k, v)
    assert calls == ([] if grad else [1])
    monkeypatch.setattr(low_precision, "MAX_INFERENCE_SCORES", 2 * 3 * 7 * 9)  # at the limit: the bf16 products
    with torch.no_grad():
        attend(*_qkv(torch.bfloat16))
    assert calls == ([] if grad else [1])
