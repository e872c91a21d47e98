"""A tiny experiment for the training-engine tests (the CPU recipe at a few steps)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from polymodal.config import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "fourm_tiny_cpu.py"


# 12 steps of 8 samples, a checkpoint every 4 steps; the learning rate is high because the batch is small.
BASE = ["train.steps=12", "train.batch_size=8", "train.save_every=4", "train.log_every=2", "train.eval_every=0",
        "train.progress=false", "train.tensorboard=false", "data.val_samples=16", "data.num_samples=64",
        "optim.base_lr=0.05", "data.mask_chunk=2"]


def tiny_experiment(out_dir: Path, *overrides: str):
    from polymodal.cli import load_recipe

    return apply_overrides(load_recipe(str(RECIPE)), [f"train.out_dir={out_dir}", *BASE, *overrides])


def cli_args(out_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "polymodal", "train", str(RECIPE), f"train.out_dir={out_dir}", *BASE, *overrides]


def release_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "release" / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert set(a) == set(b)
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], atol=atol), (k, (a[k] - b[k]).abs().max().item())
