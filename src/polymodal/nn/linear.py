"""float32 linear layers through oneDNN on CPUs where torch's BLAS runs at half speed.

torch sends a CPU float32 product (``F.linear``, ``@``) to MKL's sgemm. On AMD's Zen 5 (EPYC family 26, this
project's test machine) MKL runs its AVX2 kernels: ~115 GFLOP/s per core, where oneDNN (torch's ``mkldnn``
backend, which its bf16 products already use) reaches ~260 with AVX-512 (`benchmarks/linear_kernels.py`). The
math is the same IEEE float32 (no reduced-precision mode): only the order of the sums differs, as between any
two BLAS builds (max |difference| ~1e-4 on outputs of size ~30).

`backend()` decides once per process: oneDNN where it is at least 1.5x faster than ``F.linear`` on a product of
the model's shapes, timed on first use (0.03-0.05 s on the idle machine above); a CPU where the two are close keeps
``F.linear`` (expected on Intel's, for which MKL is tuned; no such CPU was at hand to measure), and the wide margin
keeps the choice the same from run to run. ``POLYMODAL_FP32_LINEAR=onednn``
or ``=blas`` sets it. Only float32 CPU products outside autocast change: bf16 (autocast or bf16 weights), GPUs
and float64 keep torch's path. Rows of one (autoregressive decoding) stay with ``F.linear`` unless the weight is
large (a vocabulary head), where oneDNN's per-call cost is paid back.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .gemm import native_bf16_cpu

ENV = "POLYMODAL_FP32_LINEAR"
MIN_SPEEDUP = 1.5
MIN_ROWS = 16  # below this, a weight of fewer than LARGE_WEIGHT values is faster in F.linear (oneDNN's call cost)
LARGE_WEIGHT = 1 << 21


def _op():
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., K) @ weight (N, K)^T + bias by oneDNN (strided operands are read in place)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def setting() -> str:
    """``POLYMODAL_FP32_LINEAR``: "onednn", "blas" or "auto" (unset); a ValueError naming it otherwise."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in ("onednn", "blas", "auto"):
        raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected onednn, blas or auto")
    return value


@functools.cache
def backend() -> str:
    """"onednn" or "blas": the kernel of float32 CPU linear layers in this process (see the module text)."""
    forced = setting()
    if forced == "blas" or _op() is None or not torch.backends.mkldnn.is_available():
        return "blas"
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(128, 768, generator=g), torch.randn(1024, 768, generator=g)
    try:
        ok = torch.allclose(_onednn(x, w), F.linear(x, w), rtol=1e-4, atol=1e-3)
    except RuntimeError:
        ok = False
    if not ok:
        return "blas"
    if forced == "onednn":
        return "onednn"
    # One thread, alternated, the fastest of each: the kernels' own speed, which other processes on the machine
    # (sharing cores with a multi-threaded product) would otherwise blur.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best = {"blas": float("inf"), "onednn": float("inf")}
    kernels = {"blas": lambda: F.linear(x, w), "onednn": lambda: _onednn(x, w)}
    try:
        with torch.no_grad():
            for _ in range(7):
                for name, f in kernels.items():
                    t = time.perf_counter()
                    f()
                    best[name] = min(best[name], time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    blas, onednn = best["blas"], best["onednn"]
    return "onednn" if blas >= MIN_SPEEDUP * onednn else "blas"


def _takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu":
        return False
    if weight.device.type != "cpu" or torch.is_autocast_enabled("cpu") or x.ndim == 0:
        return False
    rows = x.numel() // max(x.shape[-1], 1)
    return (rows >= MIN_ROWS or weight.numel() >= LARGE_WEIGHT) and backend() == "onednn"


def bucket(rows: int) -> int:
    """``rows`` rounded up to an eighth of their octave (8 at least; below `MIN_ROWS` left as they are). oneDNN
    compiles a primitive for each product shape and keeps it in its cache (~0.6-0.8 MB each, up to 1024 of them;
    measured: 284 row counts of one layer grew the process by 195 MB), and MaskGIT, packed batches and the loss's
    per-modality rows change the row count every step; zero rows added cost at most 12.5% of a product, ~6% on
    average, and none at a power of two."""
    if rows < MIN_ROWS:
        return rows
    step = max(8, 1 << max(rows.bit_length() - 4, 0))
    return -(-rows // step) * step


def _padded(t: torch.Tensor, rows: int) -> torch.Tensor:
    """A 2-D ``t`` with zero rows appended up to ``rows``."""
    if t.shape[0] == rows:
        return t
    out = t.new_zeros(rows, t.shape[1])
    out[: t.shape[0]] = t
    return out


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`_onednn` on x's rows padded to their `bucket` (the extra rows' outputs dropped)."""
    x2 = x.reshape(-1, x.shape[-1])
    m = x2.shape[0]
    if bucket(m) == m:
        return _onednn(x, weight, bias)
    y = _onednn(_padded(x2, bucket(m)), weight, bias)[:m]
    return y.reshape(*x.shape[:-1], y.shape[-1])


def _product_tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.T @ b`` for a (M, N), b (M, K), the summed dimension M padded to its `bucket` with zero rows."""
    m = bucket(a.shape[0])
    return _onednn(_padded(a, m).t(), _padded(b, m).t())


class _Linear(torch.autograd.Function):
    """oneDNN's float32 linear with its backward as two more oneDNN products (on transposed views)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _product(g, weight.t())  # g @ W
        if ctx.needs_input_grad[1]:
            dw = _product_tn(g2, x.reshape(-1, x.shape[-1]))  # g^T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(dim=0)
        return dx, dw, db


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; float32 on a CPU where oneDNN is faster, by oneDNN (`backend`)."""
    if not _takes(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _Linear.apply(x, weight, bias)
    return _product(x, weight, bias)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D a (M, K), b (K, N), no autograd; by oneDNN where `linear` would take it (a transposed
    ``a``, as a gradient's ``g.T @ x``, has its summed dimension bucketed instead of its rows)."""
    if not _takes(a, b.t()):
        return a @ b
    if a.stride(0) == 1 and a.shape[1] >= MIN_ROWS:  # a = t.T: the varying count is K
        return _product_tn(a.t(), b)
    return _product(a, b.t())


def one_row_products(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``layer`` (a bias-free linear layer) as a function for many products of a few rows, as autoregressive
    decoding makes of a vocabulary head: on a CPU, its weight reordered once into oneDNN's blocked layout, which
    one-row products read 3-4x faster than the plain layout (`benchmarks/linear_kernels.py`; the same values in
    bf16, float32's within its rounding). The reordered copy lives as long as the function. Anything else (a GPU,
    gradients, an adapter-wrapped or biased layer, a float32 weight where `backend` keeps BLAS, a CPU without bf16
    instructions for a bf16 weight) gets ``layer`` itself."""
    w = getattr(layer, "weight", None)
    if (type(layer) not in (Linear, nn.Linear) or layer.bias is not None or w is None or w.device.type != "cpu"
            or w.requires_grad and torch.is_grad_enabled() or _op() is None
            or not torch.backends.mkldnn.is_available()):
        return layer
    if w.dtype == torch.float32:
        ok = backend() == "onednn"
    else:
        ok = w.dtype == torch.bfloat16 and native_bf16_cpu()
    if not ok:
        return layer
    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    if reorder is None:
        return layer
    with torch.no_grad():
        blocked = reorder(w.detach(), None)

    def product(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != blocked.dtype or torch.is_autocast_enabled("cpu"):
            return layer(x)
        return _onednn(x, blocked)

    return product


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict names) whose float32 CPU product goes through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
