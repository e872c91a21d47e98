"""bf16 autocast on CPUs without bf16 instructions: the same bf16 products, computed by float32 kernels.

On a CPU without AVX512-BF16 or AMX, PyTorch runs a bf16 matrix product (and bf16 attention) through a slow
emulation, ~4x slower than the float32 kernel of the same shape. `bf16_gemm_in_fp32` computes autocast's bf16
linear layers and attention in float32 *on bf16-rounded operands*: the product of two bf16 numbers is exact in
float32 and bf16 kernels accumulate in float32, so a linear layer gives a bf16 GEMM's result (up to the order of
the float32 sums), rounded to bf16 as autocast's output is. The gradients are rounded to bf16 where autocast's
are (through the casts' backward). Attention runs float32 SDPA on the bf16-rounded q, k, v and rounds its output
(and the gradients of q, k, v) to bf16; inside, its softmax is not rounded to bf16 (the bf16 CPU kernel rounds
the probabilities before the second product), so it is as precise or more. Nothing changes where bf16 is native,
outside autocast, or off the CPU.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), so torch's bf16 kernels are fast."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch: assume native, i.e. change nothing
        return True


def _bf16_autocast(t: torch.Tensor) -> bool:
    return (t.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _rounded(t: torch.Tensor | None) -> torch.Tensor | None:
    """bf16-rounded values held in float32 (what a bf16 kernel computes with), differentiable."""
    return None if t is None else t.to(torch.bfloat16).float()


def rounded_bf16_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b as a bf16 GEMM computes it (bf16 operands, float32 sums), by the float32 kernel; bf16 result."""
    return (_rounded(a) @ _rounded(b)).to(torch.bfloat16)


class _Bf16ViaFp32(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and _bf16_autocast(args[0]):
            x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            with torch.autocast("cpu", enabled=False):
                return F.linear(_rounded(x), _rounded(w), _rounded(b)).to(torch.bfloat16)
        if func is F.scaled_dot_product_attention and _bf16_autocast(args[0]):
            q, k, v = (_rounded(t) for t in args[:3])
            with torch.autocast("cpu", enabled=False):
                return F.scaled_dot_product_attention(q, k, v, *args[3:], **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def bf16_gemm_in_fp32(enabled: bool | None = None):
    """A context for the forward pass under CPU bf16 autocast: bf16 linear layers and attention by float32
    kernels on bf16-rounded operands (see the module docstring). ``enabled=None``: only where bf16 is not
    native to the CPU. The backward pass needs no context."""
    import contextlib

    if enabled is None:
        enabled = not native_bf16_cpu()
    return _Bf16ViaFp32() if enabled else contextlib.nullcontext()
