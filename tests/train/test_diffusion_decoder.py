"""The DiVAE-style diffusion decoder trained on the world depth tokenizer's codes: the loss falls, a killed run
resumes where it stopped and ends where an uninterrupted one does, and decodes come back in metres."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from polymodal.train.diffusion_decoder import CHECKPOINT, DecoderConfig, load_decoder, train_decoder

TOKENIZER = Path(__file__).resolve().parents[2] / "src/polymodal/weights/default/tokenizers/tok_depth_64"
TINY = DecoderConfig(tokenizer=str(TOKENIZER), model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(2,), patch_size=4, scenes=8, batch_size=8, steps=30, lr=3e-3, warmup=1,
                     checkpoint_every=10)


def test_loss_falls_in_a_few_steps(tmp_path):
    _, losses = train_decoder(TINY, tmp_path, progress=False)
    assert len(losses) == 30
    # The first steps' x0 error is that of an untrained UNet (~ the variance of the targets); 30 steps on 8 scenes
    # must at least halve it.
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3


def test_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    cfg = replace(TINY, steps=6, checkpoint_every=3)
    whole, whole_losses = train_decoder(cfg, tmp_path / "whole", progress=False)
    # Stopped early (max_seconds 0: after its first step, with a checkpoint), then resumed from that file.
    _, first = train_decoder(cfg, tmp_path / "split", progress=False, max_seconds=0.0)
    assert first == whole_losses[:1]
    resumed, resumed_losses = train_decoder(cfg, tmp_path / "split", progress=False)
    assert resumed_losses == whole_losses  # same batches, same noise, same optimizer state after the resume
    for a, b in zip(whole.unet.parameters(), resumed.unet.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not [p for p in (tmp_path / "split").iterdir() if p.name != CHECKPOINT]  # no temporary left behind


def test_another_config_in_the_folder_is_refused(tmp_path):
    train_decoder(replace(TINY, steps=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="a run of another config; use another folder or delete it"):
        train_decoder(replace(TINY, steps=1, lr=1e-4), tmp_path, progress=False)


def test_decode_gives_metres_of_the_tokens_size(tmp_path):
    train_decoder(replace(TINY, steps=2), tmp_path, progress=False)
    model = load_decoder(tmp_path)
    ids = torch.randint(0, model.tok.vocab_size, (2, model.tok.num_tokens), generator=torch.Generator().manual_seed(0))
    a = model.decode(ids, steps=3, sampler="ddpm", generator=0)
    assert a.shape == (2, 64, 64) and bool((a >= 0).all())
    torch.testing.assert_close(model.decode(ids, steps=3, sampler="ddpm", generator=0), a)  # same seed, same decode
    assert load_decoder(tmp_path).cfg == replace(TINY, steps=2)


def test_a_run_can_be_extended_and_a_longer_one_loaded_at_fewer_steps(tmp_path):
    _, three = train_decoder(replace(TINY, steps=3), tmp_path, progress=False)
    _, five = train_decoder(replace(TINY, steps=5, checkpoint_every=2), tmp_path, progress=False)
    assert five[:3] == three and len(five) == 5
    _, loaded = train_decoder(replace(TINY, steps=4), tmp_path, progress=False)
    assert loaded == five  # nothing trained: the checkpoint is past 4 steps
