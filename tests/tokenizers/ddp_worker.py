"""One process of the 2-process tokenizer tests (`test_distributed`), started with ``spawn``: a module of its own,
light on imports, because every spawned process imports it again.

A worker gets torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), joins a gloo group, trains a tiny VQ-VAE
under DDP by hand (the state dict of each rank is saved), then runs ``polymodal tokenizer train`` in the same
group, as a torchrun-started process would.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist
from safetensors.torch import save_file

from polymodal.tokenizers.vqvae import ViTVQVAE, VQVAEConfig

STEPS, BATCH = 4, 8


def tiny(dead_threshold: float) -> VQVAEConfig:
    return VQVAEConfig("rgb", image_size=16, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2,
                       codebook_size=32, code_dim=8, ema_decay=0.8, dead_threshold=dead_threshold)


def train(rank: int, world: int, dead_threshold: float) -> dict[str, torch.Tensor]:
    """STEPS steps on the same global batches, each rank on its slice; returns the final state dict."""
    torch.manual_seed(0)  # identical initial weights and codebook on every rank, as the training loop does
    model = ViTVQVAE(tiny(dead_threshold))
    wrapped = model
    if world > 1:  # as train.parallelize wraps it
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


def worker(rank: int, world: int, folder: str, engine_args: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        for threshold in (0.0, 1.0):  # without restarts (comparable to one process), with restarts
            save_file(train(rank, world, threshold), f"{folder}/rank{rank}_dead{threshold}.safetensors")
        from polymodal.cli import main

        if main(engine_args) != 0:  # the training loop joins this group and ends it
            raise SystemExit(f"rank {rank}: polymodal tokenizer train failed")
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
