"""Tokenizer training in 2 processes (gloo on CPU, torchrun's environment) keeps one model: parameters and the EMA
codebook (codes, EMA counts and sums, restarts) identical on both ranks and equal to one process on the whole
batch, by hand under DDP and through ``polymodal tokenizer train``.

The quantizer all-reduces its EMA statistics; DDP's own buffer broadcast would not be enough (it copies rank 0's
buffers at each forward, dropping what the other ranks saw). Checked: with the all-reduce removed, this test fails
(rank 1's cluster_size drifts from rank 0's).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.tokenizers import ViTVQVAE

from .ddp_worker import BATCH, STEPS, tiny, train, worker

ROOT = Path(__file__).resolve().parents[2]
WORLD = 2
EMA = ("quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum", "quantizer.updates")
# The engine's run: the rgb recipe, tiny, restarts off (they draw new codes from rank 0's slice only).
ENGINE = ["train.steps=6", "train.batch_size=8", "train.eval_every=0", "train.save_every=6", "train.log_every=2",
          "train.progress=false", "train.tensorboard=false", "data.num_samples=16", "data.val_samples=4",
          "model.image_size=32", "model.patch_size=8", "model.dim=32", "model.encoder_depth=1",
          "model.decoder_depth=1", "model.codebook_size=32", "model.dead_threshold=0", "optim.base_lr=0.05"]


def engine_args(out_dir: Path) -> list[str]:
    return ["tokenizer", "train", str(ROOT / "configs" / "tokenizer_rgb_world64.py"), f"train.out_dir={out_dir}",
            *ENGINE]


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if "train/loss" in json.loads(x)]


def test_two_processes_keep_one_model_and_one_codebook(tmp_path):
    mp.start_processes(worker, args=(WORLD, str(tmp_path), engine_args(tmp_path / "two")), nprocs=WORLD,
                       start_method="spawn", join=True)
    # By hand under DDP: the ranks agree exactly, restarts or not.
    for threshold in (0.0, 1.0):
        r0, r1 = (load_file(str(tmp_path / f"rank{r}_dead{threshold}.safetensors")) for r in range(WORLD))
        assert set(r0) == set(r1) and set(EMA) <= set(r0)
        for k in r0:
            assert torch.equal(r0[k], r1[k]), f"rank 1 drifted from rank 0 in {k} (dead_threshold {threshold})"
        assert int(r0["quantizer.updates"]) == STEPS
    # ... and equal one process on the whole batch: EMA counts and sums hold both slices.
    one, two = train(0, 1, 0.0), load_file(str(tmp_path / "rank0_dead0.0.safetensors"))
    for k in one:
        assert torch.allclose(one[k].double(), two[k].double(), atol=1e-5), \
            (k, float((one[k].double() - two[k].double()).abs().max()))
    model = ViTVQVAE(tiny(0.0))
    model.load_state_dict(two)
    vectors = BATCH * (16 // 4) ** 2  # per step, bias-corrected
    assert abs(float(model.quantizer.corrected_cluster_size().sum()) - vectors) < 1e-3 * vectors

    # Through the engine: the same losses and release weights as one process.
    assert main(engine_args(tmp_path / "one")) == 0
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 3 and all(abs(x - y) < 1e-5 * max(1.0, abs(x)) for x, y in zip(a, b)), (a, b)
    w1, w2 = (load_file(str(tmp_path / r / "release" / "model.safetensors")) for r in ("one", "two"))
    assert set(w1) == set(w2)
    for k in w1:  # Adam magnifies float noise in near-zero gradients: ~3e-5 measured
        assert torch.allclose(w1[k].double(), w2[k].double(), atol=2e-4), k
    for k in EMA:
        assert torch.allclose(w1[k].double(), w2[k].double(), atol=1e-5), k
