"""Every collective the training loop makes is one the process group's backend can serve, on GPUs too.

On CUDA the group is ``cpu:gloo,cuda:nccl`` (`dist.backend_for`): host values (a step's target and token counts)
reduce on gloo, device values (loss sums, FSDP shards, the VQ codebook's statistics) on NCCL. NCCL alone would
refuse the host values at step 0, the bug this file pins down. This machine has no GPU, so no tensor here is on
CUDA; what can be checked, and is:

- `init_distributed` on a CUDA device declares `backend_for(cuda)` (init_process_group is intercepted);
- real training runs (one process under torchrun's variables with FSDP2, as the GPU check runs it; two processes
  with FSDP2; a tokenizer run for the quantizer's all-reduce and broadcast) hand torch.distributed only tensors
  on devices that the backend declared for a *CUDA* training device serves, by torch's own parser of the backend
  string (`collective_probe`). The runs reduce host tensors (the step counts), so with ``backend_for(cuda) ==
  "nccl"`` these tests fail; they assert that they saw such a tensor, so they cannot pass by seeing none.

What they cannot see here is a device value left on the host or put on the wrong GPU: every tensor is on the CPU.
scripts/gpu_check.sh runs the same training on NCCL for that. The 2-process test is also the validation bug:
FSDP with fewer held-out samples than ranks, and ranks with unequal numbers of validation batches.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as torch_dist

from polymodal.config import apply_overrides
from polymodal.train import dist
from polymodal.train.loop import train

from . import collective_probe
from .collective_probe import CUDA
from .helpers import BASE, RECIPE, ROOT, tiny_experiment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def recorded(monkeypatch):
    """A one-process group, started by the loop itself from torchrun's variables, with every collective checked
    (`collective_probe`); yields the list of (collective, device type) of the tensors handed over."""
    calls = collective_probe.install(monkeypatch.setattr)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1",
                 "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield calls
    finally:
        if torch_dist.is_initialized():  # a failed run leaves its group behind
            torch_dist.destroy_process_group()


def test_the_cuda_backend_serves_host_and_device_tensors_and_nccl_alone_does_not():
    assert dist.served_device_types(dist.backend_for(CUDA)) >= {"cpu", "cuda"}
    assert dist.served_device_types(dist.backend_for(torch.device("cpu"))) >= {"cpu"}
    assert "cpu" not in dist.served_device_types("nccl")  # the checker can tell the bug apart


def test_init_distributed_declares_the_backend_of_the_training_device(monkeypatch):
    declared = []
    monkeypatch.setattr(dist, "pick_device", lambda pref, local_rank: torch.device("cuda", local_rank))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch_dist, "init_process_group", lambda backend: declared.append(backend))
    for k, v in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    info = dist.init_distributed("auto")
    assert declared == [dist.backend_for(CUDA)] and info.launched and info.process_group


def test_every_collective_of_a_one_process_fsdp_run_is_served_on_cuda(tmp_path, recorded):
    # The GPU check's configuration (torchrun, one process, FSDP2) on gloo. FSDP2 makes no collective of its own at
    # world size 1; the 2-process test below sees them.
    result = train(tiny_experiment(tmp_path / "run", "train.steps=4", "train.save_every=2", "data.val_samples=4",
                                   "train.parallel=fsdp"))
    assert result.steps == 4 and not torch_dist.is_initialized()
    assert sum(n == "all_reduce" for n, _ in recorded) >= 4  # at least the step counts of every step
    # The run reduced host tensors: a group declared "nccl" for CUDA would have refused them.
    assert any(d not in dist.served_device_types("nccl") for _, d in recorded)


def test_the_quantizer_collectives_of_a_tokenizer_run_are_served_on_cuda(tmp_path, recorded):
    from polymodal.cli import load_recipe

    from ..tokenizers.test_distributed import ENGINE

    cfg = apply_overrides(load_recipe(str(ROOT / "configs" / "tokenizer_rgb_world64.py")),
                          [f"train.out_dir={tmp_path / 'tok'}", *ENGINE, "train.steps=2", "train.save_every=2",
                           "model.dead_threshold=1"])  # restarts on: the quantizer broadcasts new codes
    train(cfg)
    names = {n for n, _ in recorded}
    assert {"all_reduce", "broadcast"} <= names, names


def _two_processes(out_dir, *overrides: str) -> tuple[list[dict], list[list]]:
    """A 2-process run under torchrun through `collective_probe` (each rank checks its collectives); returns
    metrics.jsonl's records and each rank's (collective, device type) list."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "train" / "collective_probe.py"), "train", str(RECIPE), f"train.out_dir={out_dir}",
           *BASE, *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROBE_OUT": str(out_dir / "probe")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return records, [json.loads((out_dir / "probe" / f"rank{r}.json").read_text()) for r in range(2)]


def _val_loss(records: list[dict]) -> float:
    return [r["val/loss"] for r in records if "val/loss" in r][-1]


@pytest.mark.slow
def test_two_process_fsdp_validation_with_fewer_samples_than_ranks_and_uneven_batches(tmp_path):
    # Two held-out samples are one masking chunk (data.mask_chunk=2): rank 1 has no validation batch at all. It
    # aborted with a gloo "collective mismatch" (rank 1 skipped the forward passes whose FSDP all-gathers rank 0
    # waited in, and the loss all-reduce).
    records, calls = _two_processes(tmp_path / "none", "train.steps=2", "train.parallel=fsdp", "data.val_samples=2")
    assert _val_loss(records) > 0
    for rank in calls:  # FSDP2's own collectives were seen and checked, as the loop's
        assert {"all_gather_single", "reduce_scatter_single", "all_reduce"} <= {n for n, _ in rank}
    assert [n for n, _ in calls[0]] == [n for n, _ in calls[1]]  # the same collectives in the same order
    # 66 samples are 33 chunks, 16 to a validation batch: rank 0 has 2 batches (17 chunks), rank 1 one (16): rank 1
    # runs a filler batch that must count nothing. The oracle: one process on all 66 samples.
    uneven = ("train.steps=2", "data.val_samples=66")
    two = _val_loss(_two_processes(tmp_path / "two", *uneven, "train.parallel=fsdp")[0])
    one = train(tiny_experiment(tmp_path / "one", *uneven)).val_loss
    assert two == pytest.approx(one, rel=1e-4)
