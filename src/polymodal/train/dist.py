"""Process-group setup under torchrun and the few collectives the loop needs.

Backends: gloo on CPU; on CUDA one process group with two backends, ``cpu:gloo,cuda:nccl``, so that every
tensor is reduced where it lives. The loop reduces two kinds of values: host values counted from the batch (a
step's target tokens per modality, its token count: Python floats the loss scale and the learning-rate schedule
need before the forward pass) and device values (loss sums, FSDP shards, DDP buckets, the VQ codebook's EMA
statistics). NCCL alone serves only CUDA tensors, so the host values would have to travel to the GPU and back, a
host sync that waits for the previous step's kernels at the start of every step; gloo reduces them on the host
without waiting, and NCCL keeps the device values on the device. `served_device_types` reads a backend string with
torch's own parser; the collectives test checks the loop against it (tests/train/test_collectives.py).

A process group starts whenever a launcher's environment is set (``MASTER_ADDR`` and ``RANK``, as torchrun sets
them), even for one process: ``torchrun --nproc_per_node 1`` then runs the distributed path (collectives, FSDP2
or DDP when asked), which is how the GPU check exercises NCCL on one GPU (scripts/gpu_check.sh).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import BackendConfig

from ..config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    launched: bool = False  # started by a launcher: a process group exists even for one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def process_group(self) -> bool:
        return self.distributed or self.launched


def pick_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: got 'cuda', but this machine has no CUDA device (use auto or cpu)")
        return torch.device("cuda", local_rank)
    if pref == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("train.device: got 'mps', but this machine has no MPS device (use auto or cpu)")
    return torch.device(pref)


def backend_for(device: torch.device) -> str:
    """The process group's backend for a run whose training device is ``device`` (see the module docstring)."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def served_device_types(backend: str) -> frozenset[str]:
    """Device types whose tensors ``backend`` reduces, by torch's parser: ``{"cuda"}`` for ``"nccl"``, ``{"cpu",
    "cuda"}`` for ``"cpu:gloo,cuda:nccl"``."""
    return frozenset(BackendConfig(dist.Backend(backend)).get_device_backend_map())


def launched() -> bool:
    """True under torchrun (or any launcher that sets the env:// rendezvous variables)."""
    return "MASTER_ADDR" in os.environ and "RANK" in os.environ


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Read torchrun's environment; start a process group when launched by it (even for one process) or when
    there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    by_launcher = launched()
    if (world > 1 or by_launcher) and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend_for(device))
    return DistInfo(rank, world, local_rank, device, launched=by_launcher)


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, on ``t``'s own device (a copy; identity without a process group)."""
    t = t.clone()
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum over ranks (a copy; identity without a process group)."""
    t = t.clone()
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]
