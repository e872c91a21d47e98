"""Compatibility with the official 4M checkpoints: the reference's own forward pass, loading and saving."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal.config import ConfigError, ModelConfig
from polymodal.interop.ml4m import batch_from_mod_dict, forward_logits, load_checkpoint, save_checkpoint
from polymodal.model import FourM
from polymodal.model.checkpoint import CheckpointError
from polymodal.nn import sincos_1d, sincos_2d

from .conftest import fixtures_dir

TINY = "ml4m-4m21-tiny"


@pytest.fixture(scope="module")
def case():
    return load_file(str(fixtures_dir(TINY, "case.safetensors")))


def mod_dict_of(case):
    domains = sorted({k.split(".")[0] for k in case if not k.startswith(("logits.", "valid.", "target_ids."))})
    return {d: {"tensor": case[f"{d}.tensor"], "input_mask": case[f"{d}.input_mask"],
                "target_mask": case[f"{d}.target_mask"]} for d in domains}


def test_forward_matches_reference_logits(case):
    model = load_checkpoint(fixtures_dir(TINY)).eval()
    with torch.no_grad():
        out = forward_logits(model, mod_dict_of(case))
    expected = {k.split(".", 1)[1] for k in case if k.startswith("logits.")}
    assert set(out) == expected
    for name, (logits, valid) in out.items():
        ref, ref_valid = case[f"logits.{name}"], case[f"valid.{name}"]
        assert logits.shape == ref.shape, name
        assert torch.equal(valid, ref_valid), name
        err = (logits[valid] - ref[valid]).abs().max().item()
        assert err < 5e-5, f"{name}: max |logit error| {err:.2e}"


def test_targets_and_encoder_tokens_match_reference(case):
    model = load_checkpoint(fixtures_dir(TINY)).eval()
    batch = batch_from_mod_dict(mod_dict_of(case), model)
    with torch.no_grad():
        out = model(batch)
    for name, o in out.items():
        v = case[f"valid.{name}"]
        assert torch.equal(o.targets[v], case[f"target_ids.{name}"][v]), name
    n_inputs = sum(t.is_input.sum(1) for t in batch.values())
    info = json.loads(fixtures_dir(TINY, "case.json").read_text())
    assert int(n_inputs.max()) <= info["num_encoder_tokens"]


def test_checkpoint_loads_strictly_and_tables_match():
    sd = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    model = load_checkpoint(fixtures_dir(TINY), strict=True)
    cfg = model.config
    assert (cfg.dim, cfg.encoder_depth, cfg.num_heads, cfg.act, cfg.gated_mlp) == (32, 2, 2, "silu", True)
    assert cfg.vocab_sizes["caption"] == 4400 and cfg.vocab_sizes["tok_rgb@224"] == 96
    # Our tables equal the stored buffers up to the reference's float32 rounding.
    assert torch.allclose(sincos_2d(14, 14, 32), sd["encoder_embeddings.rgb@224.pos_emb"], atol=2e-5)
    assert torch.allclose(sincos_1d(512, 32), sd["encoder_embeddings.caption.pos_emb"], atol=2e-5)
    fresh = FourM(cfg, image_decoder_token_tables=True).state_dict()
    for key, t in sd.items():
        if key.endswith("pos_emb") and "global" not in key:
            assert torch.allclose(fresh[key], t, atol=2e-5), key


def test_save_round_trip_is_exact(tmp_path):
    model = load_checkpoint(fixtures_dir(TINY))
    save_checkpoint(model, tmp_path / "out")
    a = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    b = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    original = json.loads(fixtures_dir(TINY, "config.json").read_text())
    assert saved == original


def test_config_from_header_and_half_precision_files(tmp_path, case):
    sd = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    cfg = json.loads(fixtures_dir(TINY, "config.json").read_text())
    ref = load_checkpoint(fixtures_dir(TINY)).eval()
    for dtype in (torch.float16, torch.bfloat16):
        folder = tmp_path / str(dtype)
        folder.mkdir()
        save_file({k: v.to(dtype) for k, v in sd.items()}, str(folder / "model.safetensors"),
                  metadata={k: str(v) for k, v in cfg.items()})  # no config.json: the header is read
        model = load_checkpoint(folder).eval()
        assert model.config == ref.config
        expected = dict(ref.named_parameters())
        for name, p in model.named_parameters():
            assert p.dtype == torch.float32
            assert torch.equal(p, expected[name].to(dtype).float()), name


def _rebuild(tmp_path, sd, cfg, name="variant"):
    folder = tmp_path / name
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_shared_modality_embeddings_stored_once(tmp_path, case):
    """4M-7 style: one mod_emb per domain, stored under the encoder name only."""
    sd = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    cfg = json.loads(fixtures_dir(TINY, "config.json").read_text())
    del cfg["share_modality_embeddings"]  # absent means shared
    for key in [k for k in sd if k.startswith("decoder_embeddings.") and k.endswith(".mod_emb")]:
        enc = key.replace("decoder_", "encoder_", 1)
        if enc in sd:
            del sd[key]
    model = load_checkpoint(_rebuild(tmp_path, sd, cfg))
    assert model.config.share_modality_embeddings
    dec = model.decoder_embeddings["caption"].mod_emb
    assert dec is model.encoder_embeddings["caption"].mod_emb
    assert torch.equal(dec.detach(), sd["encoder_embeddings.caption.mod_emb"])


def test_gelu_variant_with_biases_round_trips(tmp_path):
    cfg = ModelConfig(domains_in=("rgb@224", "tok_rgb@224", "caption"), domains_out=("tok_rgb@224", "caption"),
                      dim=48, encoder_depth=1, decoder_depth=3, num_heads=3, act="gelu", gated_mlp=False,
                      qkv_bias=True, proj_bias=True, mlp_bias=True, norm_bias=True, share_modality_embeddings=True,
                      vocab_sizes={"tok_rgb@224": 64, "caption": 300})
    model = FourM(cfg).eval()
    assert model.encoder[0].mlp.fc3 is None and model.encoder[0].attn.qkv.bias is not None
    save_checkpoint(model, tmp_path / "gelu")
    loaded = load_checkpoint(tmp_path / "gelu").eval()
    assert loaded.config == cfg
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_shape_mismatch_names_tensor_and_shapes(tmp_path):
    sd = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    cfg = json.loads(fixtures_dir(TINY, "config.json").read_text())
    sd["encoder.0.attn.qkv.weight"] = torch.zeros(90, 32)
    with pytest.raises(CheckpointError, match=r"encoder\.0\.attn\.qkv\.weight.*\(90, 32\).*\(96, 32\)"):
        load_checkpoint(_rebuild(tmp_path, sd, cfg))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = load_file(str(fixtures_dir(TINY, "model.safetensors")))
    cfg = json.loads(fixtures_dir(TINY, "config.json").read_text())
    del sd["decoder.1.mlp.fc3.weight"]
    sd["encoder.7.attn.qkv.weight"] = torch.zeros(96, 32)
    with pytest.raises(CheckpointError, match=r"missing.*decoder\.1\.mlp\.fc3\.weight(.|\n)*unexpected.*encoder\.7"):
        load_checkpoint(_rebuild(tmp_path, sd, cfg))
    model = load_checkpoint(tmp_path / "variant", strict=False)  # non-strict loads what fits
    assert isinstance(model, FourM)


def test_config_with_missing_field_is_rejected(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(fixtures_dir(TINY), folder, ignore=shutil.ignore_patterns("case.*"))
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["num_heads"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="num_heads"):
        load_checkpoint(folder)


def test_unknown_domain_in_config_is_named(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(fixtures_dir(TINY), folder, ignore=shutil.ignore_patterns("case.*"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["domains_in"].append("tok_dpeth@224")
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KeyError, match=r"tok_dpeth@224.*did you mean 'tok_depth@224'"):
        load_checkpoint(folder)


def test_from_pretrained_reads_both_formats(tmp_path, case):
    official = FourM.from_pretrained(fixtures_dir(TINY)).eval()
    official.save_pretrained(tmp_path / "ours")
    ours = FourM.from_pretrained(tmp_path / "ours").eval()
    batch = batch_from_mod_dict(mod_dict_of(case), official)
    with torch.no_grad():
        a, b = official(batch), ours(batch)
    for name in a:
        assert torch.equal(a[name].logits, b[name].logits)
