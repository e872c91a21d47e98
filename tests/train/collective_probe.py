"""Checks every tensor handed to a torch.distributed collective against the devices that the backend declared for a
CUDA training device serves (`dist.backend_for`, read by torch's parser in `dist.served_device_types`).

In-process: ``calls = install(monkeypatch)``. As a torchrun script (each rank checks its own calls and writes them
to ``$PROBE_OUT/rank<r>.json``; a tensor on a device the backend would not serve fails the rank):

    python -m torch.distributed.run --nproc_per_node=2 tests/train/collective_probe.py train <recipe> <overrides>
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist

from polymodal.train import dist

CUDA = torch.device("cuda", 0)
# Tensor collectives of torch.distributed. FSDP2 calls the *_single ones (and none at world size 1, where it only
# copies); DDP's reducer calls the backend from C++ and is not seen: its tensors are the model's, on the device.
WRAPPED = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "all_gather_single", "reduce",
           "reduce_scatter", "reduce_scatter_tensor", "reduce_scatter_single", "all_to_all_single")


class UnservedDevice(AssertionError):
    """A collective got a tensor on a device that the backend of a CUDA run does not serve."""


def _tensors(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if isinstance(x, torch.Tensor))


def _checked(name: str, real, served: frozenset[str], calls: list[tuple[str, str]]):
    @functools.wraps(real)
    def checked(*args, **kwargs):
        for t in _tensors(args, kwargs):
            calls.append((name, t.device.type))
            if t.device.type not in served:
                raise UnservedDevice(f"torch.distributed.{name} got a {t.device.type} tensor {tuple(t.shape)}; the "
                                     f"backend a CUDA run declares ({dist.backend_for(CUDA)!r}) serves "
                                     f"{sorted(served)}")
        return real(*args, **kwargs)
    return checked


def install(setattr_=setattr) -> list[tuple[str, str]]:
    """Wraps the collectives (``setattr_``: pytest's ``monkeypatch.setattr`` to undo it); returns the list that
    records ``(collective, device type)`` of each tensor handed over."""
    served = dist.served_device_types(dist.backend_for(CUDA))
    calls: list[tuple[str, str]] = []
    for name in WRAPPED:
        setattr_(torch_dist, name, _checked(name, getattr(torch_dist, name), served, calls))
    return calls


if __name__ == "__main__":
    from polymodal.cli import main

    calls = install()
    code = main(sys.argv[1:])
    out = Path(os.environ["PROBE_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(calls))
    sys.exit(code)
