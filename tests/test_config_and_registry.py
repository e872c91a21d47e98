"""The modality registry and the typed configs."""

from __future__ import annotations

import hashlib

import pytest

from polymodal import modalities
from polymodal.config import MODEL_PRESETS, ConfigError, MaskingConfig, ModelConfig, from_dict, load_json, save_json
from polymodal.modalities import FOURM21_INPUTS, Kind, Modality


def test_fourm21_domains_are_registered_with_their_sizes():
    assert len(FOURM21_INPUTS) == 19
    lengths = {"caption": 256, "det": 256, "metadata": 40, "color_palette": 23, "human_poses": 275,
               "sam_instance": 290, "t5_caption": 77}
    for name, n in lengths.items():
        assert modalities.get(name).max_length == n, name
    assert modalities.get("human_poses").decoder_pos_limit == 263
    assert modalities.get("tok_dinov2@224").grid == (16, 16)
    assert modalities.get("tok_imagebind@224").grid == (16, 16)
    assert modalities.get("tok_depth@224").grid == (14, 14)
    assert modalities.get("tok_depth@448").grid == (28, 28)
    glob = modalities.get("tok_dinov2_global")
    assert glob.grid == (4, 4) and glob.pos == "learned" and glob.num_tokens == 16
    assert modalities.get("rgb@224").image_size == (224, 224)


def test_fourm_id_is_the_sha256_hash():
    for name in FOURM21_INPUTS:
        assert modalities.get(name).id == int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2**15
    assert len({modalities.get(n).id for n in FOURM21_INPUTS}) == 19


def test_register_and_conflicts():
    m = Modality("tok_user@32", Kind.IMAGE_TOKENS, vocab_size=512, grid=(4, 4))
    modalities.register(m)
    assert modalities.get("tok_user@32") is m
    modalities.register(m)  # same definition again is fine
    with pytest.raises(ValueError, match="already registered"):
        modalities.register(m.replace(vocab_size=1024))
    modalities.register(m.replace(vocab_size=1024), overwrite=True)
    assert modalities.get("tok_user@32").vocab_size == 1024


def test_modality_definition_errors():
    with pytest.raises(ValueError, match="needs vocab_size"):
        Modality("bad", Kind.IMAGE_TOKENS, grid=(2, 2))
    with pytest.raises(ValueError, match="exceeds its position table"):
        Modality("long", Kind.SEQUENCE, vocab_size=10, max_length=600)


def test_unknown_modality_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'caption'"):
        modalities.get("captoin")


def test_presets_table():
    assert MODEL_PRESETS["B"] == (768, 12, 12, 12)
    assert MODEL_PRESETS["L"] == (1024, 24, 24, 16)
    assert MODEL_PRESETS["XL"] == (2048, 24, 24, 32)
    assert MODEL_PRESETS["test"][0] <= 64
    cfg = ModelConfig.preset("small", domains_in=("caption",), domains_out=("caption",))
    assert (cfg.dim, cfg.encoder_depth, cfg.num_heads) == (512, 8, 8)
    with pytest.raises(ConfigError, match="unknown model size"):
        ModelConfig.preset("huge", domains_in=("caption",), domains_out=("caption",))


def test_config_json_round_trip(tmp_path):
    cfg = ModelConfig.preset("test", domains_in=("rgb@224", "caption"), domains_out=("caption",),
                             vocab_sizes={"caption": 123}, qk_norm=True)
    save_json(cfg, tmp_path / "c.json")
    assert load_json(ModelConfig, tmp_path / "c.json") == cfg
    masking = MaskingConfig(num_input_tokens=64, input_alphas={"caption": 0.5})
    save_json(masking, tmp_path / "m.json")
    assert load_json(MaskingConfig, tmp_path / "m.json") == masking


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="missing required field.*domains_out"):
        from_dict(ModelConfig, {"domains_in": ["caption"]})
    with pytest.raises(ConfigError, match=r"'dimm' \(did you mean dim"):
        from_dict(ModelConfig, {"domains_in": ["caption"], "domains_out": [], "dimm": 3})
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(domains_in=("caption",), domains_out=(), dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="input-only"):
        ModelConfig(domains_in=("caption",), domains_out=("rgb@224",))
