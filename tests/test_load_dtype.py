"""Weights load straight into the dtype asked for (`polymodal.nn.loading`): a bfloat16 load equals the float32 load
cast to bfloat16, tied parameters stay one parameter, and no float32 copy of the model is made on the way (the
resident-memory peak of the load, in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.interop.ml4m import load_checkpoint, save_checkpoint
from polymodal.model import FourM
from polymodal.model.checkpoint import save_folder

DOMAINS = ("caption", "rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_clip@224")


def _model(**kw) -> FourM:
    torch.manual_seed(0)
    cfg = ModelConfig(domains_in=DOMAINS, domains_out=DOMAINS[2:] + ("caption",), dim=32, encoder_depth=2,
                      decoder_depth=2, num_heads=2, **kw)
    return FourM(cfg).eval()


def _assert_bf16_is_cast_fp32(folder: Path) -> FourM:
    full = load_checkpoint(folder)
    half = load_checkpoint(folder, dtype=torch.bfloat16)
    a, b = full.state_dict(), half.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert b[k].dtype == (torch.bfloat16 if a[k].is_floating_point() else a[k].dtype), k
        assert torch.equal(b[k], a[k].to(b[k].dtype)), k
    assert all(p.device.type == "cpu" for p in (*half.parameters(), *half.buffers()))
    return half


def test_official_folder_in_bf16_equals_fp32_cast_and_keeps_shared_embeddings(tmp_path):
    model = _model(share_modality_embeddings=True)
    half = _assert_bf16_is_cast_fp32(save_checkpoint(model, tmp_path / "official"))
    # The decoder's modality embedding is the encoder's parameter, not a copy that would train apart from it.
    assert half.decoder_embeddings["tok_rgb@224"].mod_emb is half.encoder_embeddings["tok_rgb@224"].mod_emb
    assert len(list(half.parameters())) == len(list(model.parameters()))


def test_polymodal_folder_in_bf16_with_tied_tables_and_computed_positions(tmp_path):
    model = _model(tie_sequence_tables=True)
    half = _assert_bf16_is_cast_fp32(save_folder(model, tmp_path / "ours"))  # sin-cos tables left out of the file
    enc, dec = half.encoder_embeddings["caption"], half.decoder_embeddings["caption"]
    assert enc.token_emb.weight is dec.to_logits.weight
    # The same logits as the float32 model run in bfloat16 (a forward pass through every loaded tensor).
    ids = torch.randint(0, 1000, (2, 8))
    with torch.no_grad():
        ref = model.to(torch.bfloat16).decoder_embeddings["caption"].to_logits(enc.token_emb(ids))
        got = dec.to_logits(enc.token_emb(ids))
    assert torch.equal(got, ref)


def test_strict_false_keeps_initial_values_of_missing_tensors(tmp_path):
    folder = save_folder(_model(), tmp_path / "ours")
    from safetensors.torch import load_file, save_file

    sd = load_file(str(folder / "model.safetensors"))
    del sd["mask_token"]
    save_file(sd, str(folder / "model.safetensors"))
    model = FourM.from_pretrained(folder, dtype=torch.bfloat16, strict=False)
    assert model.mask_token.dtype == torch.bfloat16 and model.mask_token.device.type == "cpu"
    with pytest.raises(ValueError, match="missing"):
        FourM.from_pretrained(folder)


_PEAK = """
import json, sys, torch
from pathlib import Path
from polymodal.config import ModelConfig
from polymodal.model import FourM
from polymodal.nn.loading import parameters_on_meta
with parameters_on_meta():  # first-use allocations (80 MB, once per process), before the peak is reset
    FourM(ModelConfig(domains_in=("tok_rgb@224",), domains_out=("tok_rgb@224",), dim=64, encoder_depth=1,
                      decoder_depth=1, num_heads=2))
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the resident memory now
def status(key):
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith(key + ":"))
before = status("VmRSS")
model = FourM.from_pretrained(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
print(json.dumps({"peak": status("VmHWM") - before, "bytes": sum(p.numel() * p.element_size()
      for p in model.parameters())}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_bf16_load_makes_no_float32_copy_of_the_model(tmp_path):
    # 4M-21's image and text vocabularies at width 64: 25M values, 100 MB in float32, no tensor over 8 MB.
    domains = ("caption", "det", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_clip@224",
               "tok_dinov2@224", "tok_imagebind@224", "tok_sam_edge@224", "tok_canny_edge@224", "metadata")
    model = FourM(ModelConfig(domains_in=domains, domains_out=domains, dim=64, encoder_depth=1, decoder_depth=1,
                              num_heads=2), image_decoder_token_tables=True)
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    folder = save_checkpoint(model, tmp_path / "m")
    del model
    out = subprocess.run([sys.executable, "-c", _PEAK, str(folder), "bfloat16"], capture_output=True, text=True,
                         timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["bytes"] * 2 == fp32_bytes
    # The bf16 weights (65 MB), one float32 tensor read at a time and the allocator's slack: 112 MB measured. A
    # float32 model built then cast, or the float32 file in memory (or mapped) at once, each add fp32_bytes (129 MB):
    # the loader before this change peaked at 268 MB.
    assert r["peak"] < r["bytes"] + 0.6 * fp32_bytes, (r, fp32_bytes)


# ------------------------------------------------------------------------------------------------ tokenizers


def _assert_same_cast(full: torch.nn.Module, half: torch.nn.Module) -> None:
    a, b = full.state_dict(), half.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert b[k].dtype == (torch.bfloat16 if a[k].is_floating_point() else a[k].dtype), k
        assert torch.equal(b[k], a[k].to(b[k].dtype)), k
    # Non-persistent buffers (pixel means, sin-cos tables) are not in the file: cast too, and real.
    assert all(t.device.type == "cpu" and (t.dtype == torch.bfloat16 or not t.dtype.is_floating_point)
               for t in (*half.parameters(), *half.buffers()))


@pytest.mark.parametrize("folder", ["ml4m-tokenizers/semseg", "ml4m-tokenizers/dinov2-global",
                                    "ml4m-tokenizers/depth"])
def test_released_tokenizers_in_bf16_equal_fp32_cast(folder):
    from polymodal.interop.ml4m import load_tokenizer
    from polymodal.tokenizers.ml4m.folder import load_official_tokenizer
    from tests.conftest import fixtures_dir

    path = fixtures_dir(*folder.split("/"))
    full = load_official_tokenizer(path)
    _assert_same_cast(full, load_official_tokenizer(path, dtype=torch.bfloat16))
    _assert_same_cast(full, load_tokenizer(path, dtype=torch.bfloat16))  # interop's entry


def test_polymodal_tokenizer_folder_in_bf16_equals_fp32_cast(tmp_path):
    from polymodal.tokenizers.base import load_folder, load_tokenizer
    from polymodal.tokenizers.vqvae import ViTVQVAE, VQVAEConfig

    torch.manual_seed(0)
    folder = ViTVQVAE(VQVAEConfig("rgb", image_size=32, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1,
                                  codebook_size=64, code_dim=8)).save_pretrained(tmp_path / "tok")
    full = load_folder(ViTVQVAE, VQVAEConfig, folder)
    _assert_same_cast(full, load_folder(ViTVQVAE, VQVAEConfig, folder, dtype=torch.bfloat16))
    _assert_same_cast(full, load_tokenizer(folder, dtype=torch.bfloat16))  # the generic entry, by _class_name
    assert all(p.dtype == torch.float32 for p in full.parameters())  # no dtype: the module's own, as before
