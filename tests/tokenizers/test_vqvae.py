"""The ViT VQ-VAE: round trip within a documented error after a short training, every kind of values,
straight-through gradients, folders, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.data.world import render_sample
from polymodal.tokenizers import ViTVQVAE, VQVAEConfig, load_tokenizer
from polymodal.tokenizers.base import TokenizerInputError

# Documented bound (docs in test_the_rgb_tokenizer_learns_the_world): a 32 px world RGB tokenizer (4x4 patches,
# 8x8 tokens, 256 codes, dim 64) trained 300 steps reconstructs held-out images at >= 17 dB PSNR (measured ~19.6).
PSNR_BOUND_DB = 17.0


def tiny(values: str, **kw) -> VQVAEConfig:
    base = dict(image_size=16, patch_size=4, dim=32, encoder_depth=1, decoder_depth=1, num_heads=2,
                codebook_size=32, code_dim=8)
    if values == "semseg":
        base["channels"] = 5
    if values == "feature":
        base["channels"] = 6
    return VQVAEConfig(values, **{**base, **kw})


def sample_values(values: str, b: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if values == "rgb":
        return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    if values == "depth":
        return torch.rand(b, size, size, generator=g) * 20
    if values == "normal":
        return torch.nn.functional.normalize(torch.randn(b, 3, size, size, generator=g), dim=1)
    if values == "semseg":
        return torch.randint(0, 5, (b, size, size), generator=g)
    if values == "edge":
        return (torch.rand(b, size, size, generator=g) > 0.8).to(torch.uint8) * 255
    return torch.randn(b, 6, size, size, generator=g)


def world_rgb(n: int, res: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.stack([render_sample(0, i, res)["rgb"] for i in range(n)])).permute(0, 3, 1, 2)


def test_the_rgb_tokenizer_learns_the_world():
    """300 steps on 448 world images at 32 px; held-out PSNR of decode(encode(x)) >= PSNR_BOUND_DB."""
    torch.manual_seed(0)
    data = world_rgb(512)
    train, held = data[:448], data[448:]
    tok = ViTVQVAE(VQVAEConfig("rgb", image_size=32, patch_size=4, dim=64, codebook_size=256, code_dim=16,
                               ema_decay=0.9))
    opt = torch.optim.AdamW(tok.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        out = tok(train[torch.randint(0, len(train), (32,), generator=g)])
        loss = (out.recon_loss + out.quant_loss).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.eval()
    ids = tok.encode(held)
    assert ids.shape == (64, 64) and ids.dtype == torch.int64
    assert torch.equal(ids, tok.encode(held))  # deterministic in eval mode
    recon = tok.decode(ids)
    assert recon.shape == (64, 3, 32, 32) and recon.min() >= 0 and recon.max() <= 1
    mse = (recon - held.float() / 255).pow(2).mean(dim=(1, 2, 3))
    psnr = float((10 * torch.log10(1 / mse)).mean())
    assert psnr >= PSNR_BOUND_DB, psnr
    assert len(ids.unique()) > 64  # the codebook is in use, not collapsed


@pytest.mark.parametrize("values", ["rgb", "depth", "normal", "semseg", "edge", "feature"])
@pytest.mark.parametrize("quantizer", ["vq", "fsq", "memcodes"])
def test_every_kind_trains_and_decodes_to_natural_units(values, quantizer):
    torch.manual_seed(0)
    kw = {"fsq_levels": (4, 4, 3)} if quantizer == "fsq" else {}
    tok = ViTVQVAE(tiny(values, quantizer=quantizer, **kw))
    x = sample_values(values)
    out = tok.train()(x)
    (out.recon_loss + out.quant_loss).mean().backward()
    # Straight-through: the reconstruction loss reaches the encoder's first layer through the quantizer.
    assert tok.patch_embed.weight.grad is not None and tok.patch_embed.weight.grad.abs().sum() > 0
    assert out.ids.shape == (2, 16) and out.recon_loss.shape == (2,)
    tok.eval()
    ids = tok.encode(x)
    assert ids.shape == (2, tok.num_tokens) and int(ids.max()) < tok.vocab_size
    y = tok.decode(ids)
    if values in ("depth", "edge", "semseg"):
        assert y.shape == (2, 16, 16)
    else:
        assert y.shape == (2, tok.cfg.channels, 16, 16)
    if values == "depth":
        assert y.min() >= 0
    if values == "normal":
        n = y.norm(dim=1)
        assert torch.all(((n - 1).abs() < 1e-4) | (n == 0))
    if values == "semseg":
        assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < 5
    assert torch.equal(tok.decode(ids.reshape(2, 4, 4)), y)  # a (B, grid, grid) layout decodes the same


def test_fsq_vocab_and_modality():
    tok = ViTVQVAE(tiny("depth", quantizer="fsq", fsq_levels=(8, 5, 5, 5), name="tok_depth@16"))
    assert tok.vocab_size == 1000 and tok.cfg.code_dim == 4
    mod = tok.modality
    assert mod.name == "tok_depth@16" and mod.vocab_size == 1000 and mod.grid == (4, 4)


def test_4m_size_224_px_with_14x14_tokens():
    tok = ViTVQVAE(VQVAEConfig("depth", image_size=224, patch_size=16, dim=32, encoder_depth=1, decoder_depth=1,
                               num_heads=2, codebook_size=64, code_dim=8)).eval()
    x = torch.rand(2, 224, 224) * 10
    ids = tok.encode(x)
    assert tok.num_tokens == 196 and ids.shape == (2, 196) and tok.modality.grid == (14, 14)
    assert tok.decode(ids).shape == (2, 224, 224)


def test_save_and_load_give_identical_ids(tmp_path):
    torch.manual_seed(0)
    tok = ViTVQVAE(tiny("rgb"))
    tok.train()(sample_values("rgb", 4))  # move the EMA codebook away from its initial state
    tok.eval()
    x = sample_values("rgb", 3, seed=1)
    folder = tok.save_pretrained(tmp_path / "tok")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    for loaded in (ViTVQVAE.from_pretrained(folder), load_tokenizer(folder)):
        assert isinstance(loaded, ViTVQVAE) and loaded.cfg == tok.cfg
        assert torch.equal(loaded.encode(x), tok.encode(x))
        assert torch.equal(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))


def test_bad_input_says_what_is_wrong():
    tok = ViTVQVAE(tiny("rgb")).eval()
    with pytest.raises(TokenizerInputError, match=r"expected 3 channel\(s\) on axis 1, got 4"):
        tok.encode(torch.rand(2, 4, 16, 16))
    with pytest.raises(TokenizerInputError, match="channel-first"):
        tok.encode(torch.rand(2, 16, 16, 3))
    with pytest.raises(TokenizerInputError, match="expected 16 x 16 pixels, got 32 x 32"):
        tok.encode(torch.rand(2, 3, 32, 32))
    bad = torch.rand(2, 3, 16, 16)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(TokenizerInputError, match="NaN"):
        tok.encode(bad)
    with pytest.raises(TokenizerInputError, match="outside the codebook"):
        tok.decode(torch.full((1, 16), 32))
    with pytest.raises(TokenizerInputError, match=r"shape \(B, 16\)"):
        tok.decode(torch.zeros(1, 15, dtype=torch.long))
    seg = ViTVQVAE(tiny("semseg")).eval()
    with pytest.raises(TokenizerInputError, match="class ids from 7 to 7, expected 0 to 4"):
        seg.encode(torch.tensor([[[7]]]).expand(1, 16, 16))
    with pytest.raises(TokenizerInputError, match="integer class ids"):
        seg.encode(torch.zeros(1, 16, 16))
