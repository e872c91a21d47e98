"""Attention for bfloat16 inference and training on the CPU.

torch's CPU flash-attention kernel (what `F.scaled_dot_product_attention` runs there) is slow in bfloat16: on a CPU
with AVX512-BF16 it took 2.95 ms for one (1, 6, 385, 64) self-attention, single thread, where float32 took 2.68 ms
and two bf16 matrix products around a softmax took 1.18 ms (/tmp micro-benchmark, 2026-12-06, load ~4). MaskGIT's
encoder runs that shape 48 times a generation, so bf16 weights gained little until attention took this path.

Training too: the bf16 flash kernel's backward pass is slower still. In one bf16 training step of 4M-21's tiny
model (vs_reference's batch, 1 thread, load ~5) its 18 calls took 0.24 s backward and 0.09 s forward, ~40 GFLOP/s
where the model's products ran ~340; by this path fwd + bwd of one (8, 6, 128, 64) masked call went 37 -> 15 ms and
the step ~1.13 -> ~0.95 s (alternating in one process). Against float64 attention, output and gradients were
within 5.8e-3 relative here and 4.8e-3 with the flash kernel (tests/nn/test_attend_training.py).

`attend` has SDPA's signature. Outside bfloat16, off the CPU or on a CPU without bf16 instructions
(`gemm.native_bf16_cpu`) it is SDPA. Otherwise the scores q k^T come from a bf16 product (rounded to bf16, as the
reference's attention under autocast rounds them), the softmax is computed in float32 and its probabilities are
rounded to bf16 before the second product (as the flash kernel does): the scores' rounding is the one difference
from the flash kernel.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .gemm import native_bf16_cpu

# Above this many scores (B * H * L * S) and without gradients, torch's flash kernel, which never holds the scores,
# beats this path's float32 softmax over all of them: batched guided MaskGIT's (64, 6, 392, 392) took 240 ms here and
# 98 ms there (2 threads, idle; 382 vs 194 ms at 1 thread). At one image's (1, 6, 385, 385) two isolated runs
# disagreed (2 threads: 2.7 vs 1.5 ms, then 0.7 vs 1.6 ms; 1 thread: 4.0 vs 2.9 ms), so small cases keep the path
# the whole-generation profile chose (module docstring). With gradients this path stays: the flash backward is slow.
MAX_INFERENCE_SCORES = 1 << 22


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
           is_causal: bool = False) -> torch.Tensor:
    """q (B, H, L, Dh), k and v (B, H, S, Dh), boolean ``attn_mask`` broadcastable to (B, H, L, S), True = may
    attend -> (B, H, L, Dh); `F.scaled_dot_product_attention` with its default scale."""
    if q.dtype != torch.bfloat16 or q.device.type != "cpu" or not native_bf16_cpu() or (
            q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] > MAX_INFERENCE_SCORES
            and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    if is_causal:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        attn_mask = causal if attn_mask is None else attn_mask & causal
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
