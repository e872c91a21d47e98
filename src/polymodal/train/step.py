"""One optimizer step, as the training loop takes it: callable alone, so that benchmarks time the loop's own path.

    out = train_step(model, micro, optimizer, objective, cfg, stats=objective.step_stats(micro))

runs, per micro-batch, the forward pass and the objective's loss under the run's precision, and the backward pass
(DDP/FSDP gradient sync on the last micro-batch only); then gradient clipping, the optimizer step and zero_grad.
With ``train.fused_loss`` a `FourMObjective` asks the model for hidden states (``forward(logits=False)``) and
projects them fused with the cross-entropy; with ``train.precision="bf16"`` and ``train.bf16_via_fp32`` on a CPU
without bf16 instructions, autocast's bf16 products run as float32 kernels on bf16-rounded operands (`nn.gemm`).
Nothing here syncs with the host: the loss sums stay on the training device, and the caller reads them when it logs.
The learning rate is the caller's (`optim.set_lr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ExperimentConfig
from ..nn.gemm import bf16_gemm_in_fp32
from .objectives import Objective
from .optim import clip_and_step, clip_grad_norm  # noqa: F401 (benchmarks/vs_reference.py wraps the name)
from .parallelize import autocast, no_sync


@dataclass
class StepOutput:
    sums: torch.Tensor  # this rank's loss sums of the step (`Objective.loss`), float64, on the training device
    grad_norm: torch.Tensor  # () the global gradient norm before clipping


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
