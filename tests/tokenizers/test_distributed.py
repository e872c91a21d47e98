"""A VQ-VAE trained by 2 processes (gloo, CPU, DDP as `train.parallelize` wraps it) keeps one model: parameters
and the EMA codebook (codes, EMA counts and sums, restarts) identical on both ranks, and equal to one process
training on the whole batch. The quantizer all-reduces its EMA statistics; DDP's own buffer broadcast would not
be enough (it copies rank 0's buffers at each forward, dropping what the other ranks saw)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from polymodal.cli import main
from polymodal.tokenizers import ViTVQVAE, VQVAEConfig

ROOT = Path(__file__).resolve().parents[2]

STEPS, BATCH, WORLD = 4, 8, 2
EMA = ("quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum", "quantizer.updates")


def tiny(dead_threshold: float) -> VQVAEConfig:
    return VQVAEConfig("rgb", image_size=16, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2,
                       codebook_size=32, code_dim=8, ema_decay=0.8, dead_threshold=dead_threshold)


def train(rank: int, world: int, dead_threshold: float) -> dict[str, torch.Tensor]:
    """STEPS steps on the same global batches; each rank takes its slice. Returns the final state dict."""
    torch.manual_seed(0)  # identical initial weights and codebook on every rank, as the training loop does
    model = ViTVQVAE(tiny(dead_threshold))
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # not Adam: it would magnify float noise in ~0 gradients
    data = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x = torch.rand(BATCH, 3, 16, 16, generator=data).chunk(world)[rank]
        out = wrapped(x)
        loss = (out.recon_loss + out.quant_loss).mean()  # DDP averages gradients: the whole batch's mean
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        for threshold in (0.0, 1.0):  # without restarts (comparable to one process), with restarts
            save_file(train(rank, world, threshold), f"{folder}/rank{rank}_dead{threshold}.safetensors")
    finally:
        torch_dist.destroy_process_group()


def test_two_processes_keep_one_model_and_one_codebook(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_worker, args=(WORLD, str(tmp_path)), nprocs=WORLD, start_method="spawn", join=True)
    for threshold in (0.0, 1.0):
        r0, r1 = (load_file(str(tmp_path / f"rank{r}_dead{threshold}.safetensors")) for r in range(WORLD))
        assert set(r0) == set(r1) and set(EMA) <= set(r0)
        for k in r0:
            assert torch.equal(r0[k], r1[k]), f"rank 1 drifted from rank 0 in {k} (dead_threshold {threshold})"
        assert int(r0["quantizer.updates"]) == STEPS
    # One process on the whole batch: the same EMA statistics (hence counts summed over ranks) and weights.
    # Restarts are off here: they draw replacement codes from rank 0's slice, not from the whole batch.
    one = train(0, 1, 0.0)
    two = load_file(str(tmp_path / "rank0_dead0.0.safetensors"))
    for k in one:
        assert torch.allclose(one[k].double(), two[k].double(), atol=1e-5), \
            (k, float((one[k].double() - two[k].double()).abs().max()))
    # The EMA counts hold the whole batch: BATCH * tokens vectors per step, bias-corrected.
    vectors = BATCH * (16 // 4) ** 2
    model = ViTVQVAE(tiny(0.0))
    model.load_state_dict(two)
    assert abs(float(model.quantizer.corrected_cluster_size().sum()) - vectors) < 1e-3 * vectors


# The engine's path: `polymodal tokenizer train` under torchrun (2 processes, gloo) and alone, restarts off.
ENGINE = ["train.steps=6", "train.batch_size=8", "train.eval_every=0", "train.save_every=6", "train.log_every=2",
          "train.progress=false", "train.tensorboard=false", "data.num_samples=16", "data.val_samples=4",
          "model.image_size=32", "model.patch_size=8", "model.dim=32", "model.encoder_depth=1",
          "model.decoder_depth=1", "model.codebook_size=32", "model.dead_threshold=0", "optim.base_lr=0.05"]


def _records(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if "train/loss" in json.loads(x)]


@pytest.mark.slow
def test_torchrun_tokenizer_training_matches_one_process(tmp_path):
    recipe = str(ROOT / "configs" / "tokenizer_rgb_world64.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "polymodal",
           "tokenizer", "train", recipe, f"train.out_dir={tmp_path / 'two'}", *ENGINE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert main(["tokenizer", "train", recipe, f"train.out_dir={tmp_path / 'one'}", *ENGINE]) == 0
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-5 * max(1.0, abs(a)), (one, two)
    w1, w2 = (load_file(str(tmp_path / r / "release" / "model.safetensors")) for r in ("one", "two"))
    assert set(w1) == set(w2)
    for k in w1:  # Adam magnifies float noise in near-zero gradients: ~3e-5 measured
        assert torch.allclose(w1[k].double(), w2[k].double(), atol=2e-4), k
    for k in EMA:  # the EMA counts of the two processes' halves add up to the one process's whole batch
        assert torch.allclose(w1[k].double(), w2[k].double(), atol=1e-5), k
