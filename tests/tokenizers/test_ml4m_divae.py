"""The released DiVAE family (ViT encoder + patched-UNet diffusion decoder) against the reference's fixtures, and the
samplers against closed forms."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from polymodal.tokenizers.base import TokenizerInputError, TokenizerLoadError
from polymodal.tokenizers.ml4m import diffusion as D
from polymodal.tokenizers.ml4m.divae import DiVAE
from polymodal.tokenizers.ml4m.folder import load_official_tokenizer
from polymodal.tokenizers.ml4m.unet import UNetConfig

from ..conftest import fixtures_dir

TINY = ("tok_rgb@224", "tok_depth@224")


def _load(*parts: str) -> tuple[DiVAE, dict[str, torch.Tensor]]:
    folder = fixtures_dir(*parts)
    return DiVAE.from_official(folder), load_file(str(folder / "case.safetensors"))


def _seed0() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# ------------------------------------------------------------------------------------- parity


def test_depth_fixture_sizes_are_read_from_the_weights():
    model, _ = _load("ml4m-tokenizers", "depth")
    # By hand from the file's shapes: time MLP 32 -> 128, input blocks res(32), down, res(64)+attention, out 16 = 1*4*4.
    assert model.cfg.unet == UNetConfig(in_channels=1, cond_channels=32, patch_size=4, model_channels=32,
                                        channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,))
    assert (model.cfg.values, model.vocab_size, model.num_tokens) == ("depth", 64, 16)


def test_depth_fixture_ids_and_unet_output():
    model, case = _load("ml4m-tokenizers", "depth")
    assert torch.equal(model.tokenize(case["input"]), case["tokens"])
    with torch.inference_mode():
        out = model.decoder(case["unet_noised"], case["unet_t"], model.quantize.lookup(case["tokens"]))
    assert (out - case["unet_out"]).abs().max() < 1e-4


@pytest.mark.parametrize("steps", [1, 10])
def test_depth_fixture_decodes_match_the_reference(steps):
    model, case = _load("ml4m-tokenizers", "depth")
    out = model.decode_tokens(case["tokens"], timesteps=steps, generator=_seed0(), image_size=64)
    assert (out - case[f"decoded_t{steps}"]).abs().max() < 2e-3


@pytest.mark.parametrize("domain", TINY)
def test_tiny_release_tokenizers_match_the_reference(domain):
    model, case = _load("ml4m-4m21-tiny-tokenizers", domain)
    assert torch.equal(model.tokenize(case["input"]), case["tokens"])
    out = model.decode_tokens(case["tokens"], timesteps=2, generator=_seed0(), image_size=224)
    assert (out - case["decoded_t2"]).abs().max() < 2e-3


# ------------------------------------------------------------------------------------ samplers


def test_zero_terminal_snr_schedule_matches_its_closed_form():
    ab = D.Schedule.from_config(beta_schedule="linear", zero_terminal_snr=True).alphas_cumprod.double()
    # Lin et al. 2023, by hand in float64: sqrt(abar) shifted to end at 0 and scaled to keep its start.
    root = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).sqrt()
    want = ((root - root[-1]) * root[0] / (root[0] - root[-1])) ** 2
    assert ab[-1] == 0
    assert abs(float(ab[0]) - (1 - 1e-4)) < 1e-7
    assert (ab - want).abs().max() < 1e-5
    assert bool((ab[1:] < ab[:-1]).all())


def test_timestep_spacings_are_the_references():
    assert D.timesteps(10, spacing="leading") == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert D.timesteps(10, spacing="trailing") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert D.timesteps(3, spacing="trailing") == [999, 666, 333, 0]  # 1000 // 3 = 333: one step more
    assert len(D.timesteps(25, spacing="trailing")) == 25
    with pytest.raises(ValueError, match="steps must be between 1 and 1000, got 0"):
        D.timesteps(0)


def test_ddim_at_eta_one_is_the_ddpm_step():
    # A closed-form identity: DDIM's eta = 1 variance is DDPM's posterior variance and the means agree.
    schedule = D.Schedule.from_config()
    g = torch.Generator().manual_seed(1)
    x0, xt = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1, torch.randn(2, 1, 8, 8, generator=g)
    for t, prev in [(999, 959), (500, 460), (40, 0)]:
        ddpm = D.ddpm_step(schedule, x0, t, prev, xt, torch.Generator().manual_seed(7))
        ddim = D.ddim_step(schedule, x0, t, prev, xt, torch.Generator().manual_seed(7), eta=1.0)
        assert (ddpm - ddim).abs().max() < 1e-5


def test_dynamic_threshold_rescales_by_the_quantile():
    x = torch.linspace(-4, 4, 1001).reshape(1, 1, 1, 1001)
    s = torch.quantile(x.abs().flatten(), 0.995).item()
    out = D.dynamic_threshold(x, 0.995, max_value=10.0)
    assert abs(out.max().item() - 1.0) < 1e-6 and abs(out[0, 0, 0, 500].item()) < 1e-6
    assert abs(out[0, 0, 0, 600].item() - x[0, 0, 0, 600].item() / s) < 1e-6
    assert torch.equal(D.dynamic_threshold(x), x.clamp(-1, 1))  # sample_max_value 1: plain clipping


def test_ddim_is_deterministic_and_fewer_steps_decode_in_range():
    model, case = _load("ml4m-tokenizers", "depth")
    ids = case["tokens"]
    a = model.decode_tokens(ids, timesteps=10, generator=_seed0(), sampler="ddim")
    b = model.decode_tokens(ids, timesteps=10, generator=_seed0(), sampler="ddim")
    c = model.decode_tokens(ids, timesteps=10, generator=torch.Generator().manual_seed(1), sampler="ddim")
    assert torch.equal(a, b) and not torch.equal(a, c)
    few = model.decode_tokens(ids, timesteps=3, generator=_seed0(), sampler="ddim")
    assert few.shape == (2, 1, 64, 64) and few.abs().max() <= 1.0 and torch.isfinite(few).all()


def test_a_bfloat16_unet_stays_close_and_returns_float32():
    model, case = _load("ml4m-tokenizers", "depth")
    codes = model.quantize.lookup(case["tokens"])
    model.decoder.to(torch.bfloat16)
    with torch.inference_mode():
        out = model.decoder(case["unet_noised"], case["unet_t"], codes)
    assert out.dtype == torch.float32
    assert (out - case["unet_out"]).abs().max() < 0.05 * case["unet_out"].abs().max()
    assert model.decode_tokens(case["tokens"], timesteps=2, generator=_seed0()).dtype == torch.float32


# ---------------------------------------------------------------------------------- the protocol


def test_the_folder_reader_picks_the_divae():
    tok = load_official_tokenizer(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_depth@224"))
    assert isinstance(tok, DiVAE) and (tok.cfg.name, tok.cfg.values) == ("tok_depth@224", "depth")


def test_decode_gives_natural_units_and_a_seed_repeats():
    model, _ = _load("ml4m-4m21-tiny-tokenizers", "tok_rgb@224")
    ids = torch.randint(0, model.vocab_size, (1, model.num_tokens), generator=_seed0())
    rgb = model.decode(ids, steps=2, generator=3)
    assert rgb.shape == (1, 3, 224, 224) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.equal(rgb, model.decode(ids, steps=2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(TokenizerInputError, match=r"ids outside the codebook \(from 0 to 96\); valid ids are 0 to 95"):
        model.decode(torch.cat([ids[:, :-1], torch.tensor([[96]])], 1), steps=1)


def test_encode_reads_natural_units():
    rgb_model, _ = _load("ml4m-4m21-tiny-tokenizers", "tok_rgb@224")
    img = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8, generator=_seed0())
    assert torch.equal(rgb_model.encode(img), rgb_model.tokenize(img.float() / 255 * 2 - 1).flatten(1))
    depth_model, _ = _load("ml4m-tokenizers", "depth")
    metres = torch.rand(2, 64, 64, generator=_seed0()) * 10 + 0.5
    ids = depth_model.encode(metres)
    assert ids.shape == (2, 16)
    assert torch.equal(ids, depth_model.encode(3 * metres + 2))  # standardized: scale and shift do not matter
    with pytest.raises(TokenizerInputError, match=r"not a multiple of the patch size 16"):
        depth_model.encode(torch.rand(1, 60, 64))


def test_progress_bar_on_request(capsys):
    model, case = _load("ml4m-tokenizers", "depth")
    model.decode_tokens(case["tokens"], timesteps=3, generator=_seed0(), progress=True)
    assert "ddpm decode" in capsys.readouterr().err


def test_folder_errors_name_the_problem(tmp_path):
    src = fixtures_dir("ml4m-tokenizers", "depth")
    with pytest.raises(FileNotFoundError, match="is not a tokenizer folder"):
        DiVAE.from_official(tmp_path)
    folder = tmp_path / "depth"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "codebook_size": 8192}))
    with pytest.raises(TokenizerLoadError, match="codebook_size is 8192 but the weights have 64"):
        DiVAE.from_official(folder)
    with pytest.raises(TokenizerLoadError, match="a rgb tokenizer has 3 channels, these weights 1"):
        DiVAE.from_official(src, values="rgb")
    (folder / "config.json").write_text(json.dumps({**cfg, "beta_schedule": "shifted_cosine:0.5"}))
    with pytest.raises(TokenizerLoadError, match="beta_schedule 'shifted_cosine:0.5' is not supported"):
        DiVAE.from_official(folder)


def test_a_hub_snapshot_takes_its_modality_from_the_repo_name(tmp_path):
    snapshot = tmp_path / "models--EPFL-VILAB--4M_tokenizers_depth_8k_224-448" / "snapshots" / "0123abcd"
    shutil.copytree(fixtures_dir("ml4m-tokenizers", "depth"), snapshot)
    assert DiVAE.from_official(snapshot).cfg.values == "depth"
    plain = tmp_path / "0123abcd"
    shutil.copytree(snapshot, plain)
    assert DiVAE.from_official(plain).cfg.values == "raw"
