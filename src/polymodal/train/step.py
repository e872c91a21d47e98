"""One optimizer step, as the training loop takes it: callable alone, so that benchmarks time the loop's own path.

    out = train_step(model, micro, optimizer, objective, cfg, stats=objective.step_stats(micro))

runs, per micro-batch, the forward pass and the objective's loss under the run's precision, and the backward pass
(DDP/FSDP gradient sync on the last micro-batch only); then gradient clipping, the optimizer step and zero_grad.
With ``train.fused_loss`` a `FourMObjective` asks the model for hidden states (``forward(logits=False)``) and
projects them fused with the cross-entropy; with ``train.precision="bf16"`` and ``train.bf16_via_fp32`` on a CPU
without bf16 instructions, autocast's bf16 products run as float32 kernels on bf16-rounded operands (`nn.gemm`).
Nothing here syncs with the host: the loss sums stay on the training device, and the caller reads them when it logs.
The learning rate is the caller's (`optim.set_lr`). On the CPU the loop first sets glibc's allocator to keep freed
memory (`keep_freed_memory`), so that each step's gradients reuse the last step's pages.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ExperimentConfig
from ..nn.gemm import bf16_gemm_in_fp32
from .objectives import Objective
from .optim import clip_and_step
from .parallelize import autocast, no_sync


@dataclass
class StepOutput:
    sums: torch.Tensor  # this rank's loss sums of the step (`Objective.loss`), float64, on the training device
    grad_norm: torch.Tensor  # () the global gradient norm before clipping


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory that a training step frees, for the next step; process-wide, once.

    A step allocates its gradients and activations afresh (the embedding tables' and heads' gradients alone are
    ~1.2 GB in 4M-21's tiny model). glibc serves blocks over 32 MB (and, by its dynamic threshold, many smaller
    ones) with ``mmap`` and returns them to the kernel when freed, so every step page-faults (and the kernel
    zeroes) all of that memory again: ~250,000 faults per bf16 step there. Without ``mmap`` (``M_MMAP_MAX`` 0) and
    with trimming of the heap's top only past 2 GB free, a freed block is reused by the next step's allocation of
    the same size: 4.38 -> 3.13 s per bf16 step, faults 145,000-319,000 -> ~100 (1 thread, load ~6, alternating
    in one process). The price: memory the process freed stays its own. Over 8 bf16 steps there the peak RSS was
    6.34 GB (6.28 without), and between steps the process held 6.49 GB instead of 5.28 (the gradients, which the
    next step needs again). Process-wide, so the training loop calls it at its start on the CPU, not
    `train_step`. Returns whether the allocator was changed (False off Linux/glibc)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def forward_context(cfg: ExperimentConfig, device: torch.device):
    """The contexts the loop's forward passes run in: autocast at ``train.precision`` and, where it applies, the
    bf16 products by float32 kernels."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(autocast(device, cfg.train.precision))
    if cfg.train.precision == "bf16":
        stack.enter_context(bf16_gemm_in_fp32(None if cfg.train.bf16_via_fp32 else False))
    return stack


def train_step(model: nn.Module, micro: list, optimizer: torch.optim.Optimizer, objective: Objective,
               cfg: ExperimentConfig, *, stats: torch.Tensor, world: int = 1,
               device: torch.device | str = "cpu") -> StepOutput:
    """One optimizer step on this rank's micro-batches ``micro`` (`Objective.micro_batches`).

    ``model``: the module to train (the model itself or its DDP wrapper); ``stats``: the step's normalizers
    (`Objective.step_stats`) summed over ranks; ``world``: the number of ranks. Clips at ``optim.clip_grad``
    (0: no clipping, the norm is still measured).
    """
    device = torch.device(device)
    sums = None
    for i, batch in enumerate(micro):
        with no_sync(model, i < len(micro) - 1):  # the backward pass too: it is where DDP/FSDP reduce
            with forward_context(cfg, device):
                loss, s = objective.loss(model, batch, stats, world, device)
            loss.backward()
        sums = s if sums is None else sums + s
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else float("inf")
    grad_norm = clip_and_step(optimizer, params, max_norm)
    optimizer.zero_grad(set_to_none=True)
    return StepOutput(sums, grad_norm)
