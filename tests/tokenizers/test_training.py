"""Tokenizer training through the training engine: `polymodal tokenizer train` on the in-memory world and on a
world dataset folder; the release folder is a tokenizer, every evaluation writes metrics and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from polymodal.cli import main
from polymodal.data.world import synthesize
from polymodal.tokenizers import ViTVQVAE, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
TINY = ["train.steps=16", "train.batch_size=8", "train.eval_every=8", "train.save_every=8", "train.log_every=4",
        "train.progress=false", "train.tensorboard=false", "data.num_samples=24", "data.val_samples=8",
        "model.image_size=32", "model.dim=32", "model.encoder_depth=1", "model.decoder_depth=1",
        "model.codebook_size=64"]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_rgb_recipe_on_the_in_memory_world(tmp_path):
    run = tmp_path / "rgb"
    assert main(["tokenizer", "train", str(ROOT / "configs" / "tokenizer_rgb_world64.py"), f"train.out_dir={run}",
                 *TINY]) == 0
    recs = records(run)
    train = [r["train/loss"] for r in recs if "train/loss" in r]
    assert train[-1] < train[0]
    evals = [r for r in recs if "val/psnr" in r]
    assert [r["step"] for r in evals] == [8, 16]
    assert all(0 < r["val/usage"] <= 1 and r["val/perplexity"] >= 1 for r in evals)
    assert sorted(p.name for p in (run / "reconstructions").iterdir()) == ["step_000008.png", "step_000016.png"]
    tok = load_tokenizer(run / "release")
    assert isinstance(tok, ViTVQVAE) and tok.num_tokens == 16
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(tok.encode(x), tok.encode(x))


def test_semseg_recipe_on_a_dataset_folder(tmp_path):
    data = tmp_path / "world32"
    synthesize(data, 40, 32, 0, 1, shard_size=16)
    run = tmp_path / "semseg"
    main(["tokenizer", "train", str(ROOT / "configs" / "tokenizer_semseg_world64.py"), f"train.out_dir={run}",
          f"data.path={data}", *TINY])
    evals = [r for r in records(run) if "val/miou" in r]
    assert len(evals) == 2 and all(0 <= r["val/miou"] <= 1 and 0 <= r["val/pixel_acc"] <= 1 for r in evals)
    assert (run / "reconstructions" / "step_000016.png").stat().st_size > 500
    assert load_tokenizer(run / "release").vocab_size == 64
