"""The released 4M VQ-VAE tokenizers (ViT and Bottleneck-MLP families) against the reference's own outputs.

The fixture folders (``../shared/fixtures``, made by apple/ml-4m with random weights) hold what the reference's
``tokenize`` and ``decode_tokens`` return; ids must be identical and decodes within 1e-4.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from polymodal.interop import ml4m as interop
from polymodal.tokenizers import TokenizerInputError, load_tokenizer
from polymodal.tokenizers.ml4m.folder import load_official_tokenizer, official_tokenizer_types, save_official
from polymodal.tokenizers.ml4m.instances import place_instances
from polymodal.tokenizers.ml4m.vqvae import OfficialVQVAE, OfficialVQVAEConfig
from polymodal.tokenizers.serializers import Instance
from tests.conftest import fixtures_dir

CASES = ["ml4m-tokenizers/semseg", "ml4m-tokenizers/clip", "ml4m-tokenizers/dinov2-global",
         "ml4m-4m21-tiny-tokenizers/tok_dinov2_global"]


def _case(folder: str) -> dict[str, torch.Tensor]:
    return load_file(str(fixtures_dir(*folder.split("/"), "case.safetensors")))


@pytest.mark.parametrize("folder", CASES)
def test_reference_ids_and_decodes(folder):
    case = _case(folder)
    tok = interop.load_tokenizer(fixtures_dir(*folder.split("/")))
    assert isinstance(tok, OfficialVQVAE)
    ids = interop.tokenize(tok, case["input"])
    assert ids.shape == case["tokens"].shape and torch.equal(ids, case["tokens"])
    decoded = interop.decode_tokens(tok, case["tokens"])
    assert decoded.shape == case["decoded"].shape
    assert (decoded - case["decoded"]).abs().max() < 1e-4


@pytest.mark.parametrize("folder", CASES)
def test_protocol_round_trip_matches_the_reference(folder):
    """encode(natural values) -> (B, num_tokens) ids = the reference's tokens flattened; decode(ids) -> natural
    values = the reference's decode in natural units (class ids by argmax, vectors as (B, C))."""
    case = _case(folder)
    tok = load_tokenizer(fixtures_dir(*folder.split("/")))  # the generic loader recognises a released folder
    x, ref = case["input"], case["decoded"]
    values = tok.cfg.values
    natural = x[:, :, 0, 0] if values == "vector" else x
    ids = tok.encode(natural)
    assert ids.shape == (x.shape[0], tok.num_tokens)
    assert torch.equal(ids, case["tokens"].reshape(x.shape[0], -1))
    out = tok.decode(ids)
    if values == "semseg":
        assert out.dtype == torch.int64 and torch.equal(out, ref.argmax(1))
    else:
        expected = ref[:, :, 0, 0] if values == "vector" else ref
        assert out.shape == expected.shape and (out - expected).abs().max() < 1e-4


def test_vector_tokenizer_gives_one_token_per_codebook():
    tok = load_tokenizer(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global"))
    assert (tok.num_tokens, tok.vocab_size, tok.cfg.name) == (16, 96, "tok_dinov2_global")


def test_other_image_size_resizes_positions_like_the_reference_path():
    """At image_size 64 the semseg tokenizer (trained at 32) works on an 8x8 grid; its protocol path gives the
    ids of the reference's tokenize at that size (positions resized bicubically in both)."""
    folder = fixtures_dir("ml4m-tokenizers", "semseg")
    big, native = load_official_tokenizer(folder, image_size=64), load_official_tokenizer(folder)
    x = torch.randint(0, 134, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    assert big.num_tokens == 64
    assert torch.equal(big.encode(x), native.tokenize(x).reshape(2, -1))
    with pytest.raises(TokenizerInputError, match=r"expected \(B, 32, 32\), got \(2, 64, 64\)"):
        native.encode(x)


def test_a_folder_with_only_the_weights_loads_from_their_header(tmp_path):
    folder = _copy("ml4m-tokenizers/clip", tmp_path)
    (folder / "config.json").unlink()
    tok = load_tokenizer(folder)
    case = _case("ml4m-tokenizers/clip")
    assert isinstance(tok, OfficialVQVAE) and torch.equal(interop.tokenize(tok, case["input"]), case["tokens"])


def test_a_diffusion_decoder_folder_goes_to_the_divae_family():
    tok = interop.load_tokenizer(fixtures_dir("ml4m-tokenizers", "depth"))
    divae = official_tokenizer_types()[1]
    assert isinstance(tok, divae) and not isinstance(tok, OfficialVQVAE)


# ------------------------------------------------------------------------------------------------ bad input


def _copy(folder: str, tmp_path):
    dst = tmp_path / folder.split("/")[-1]
    shutil.copytree(fixtures_dir(*folder.split("/")), dst, ignore=shutil.ignore_patterns("case.*"))
    return dst


def test_folder_that_is_not_a_tokenizer(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json and no tokenizer JSON file"):
        load_tokenizer(empty)
    with pytest.raises(FileNotFoundError, match=r"empty is not a tokenizer folder: no config.json and no model.s"):
        load_official_tokenizer(empty)
    (empty / "config.json").write_text(json.dumps({"image_size": 224}))
    with pytest.raises(ValueError, match=r"no enc_type, dec_type, quant_type"):
        load_official_tokenizer(empty)
    weightless = _copy("ml4m-tokenizers/clip", tmp_path)
    (weightless / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"clip is not a complete tokenizer folder: config.json but no model"):
        load_official_tokenizer(weightless)


def test_weights_of_another_shape_than_the_config(tmp_path):
    folder = _copy("ml4m-tokenizers/semseg", tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "codebook_size": 128}))
    with pytest.raises(ValueError) as e:
        load_tokenizer(folder)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(folder / "model.safetensors"))
    # The one check of every tokenizer folder (`tokenizers.base.checked_state`), worded as for polymodal's own.
    assert msg == (f"{folder}/model.safetensors: tensor quantize._codebook.cluster_size has shape (64,) in the file, "
                   f"the config ({folder}/config.json) expects (128,)")


def test_a_tensor_the_config_has_not_is_named(tmp_path):
    from safetensors.torch import save_file

    folder = _copy("ml4m-tokenizers/semseg", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    save_file({**state, "decoder.extra": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        load_official_tokenizer(folder)
    assert str(e.value) == (f"{folder}/model.safetensors: the tensors do not match the config ({folder}/config.json): "
                            "unexpected (1): decoder.extra")


def test_missing_tensor_is_named(tmp_path):
    folder = _copy("ml4m-tokenizers/clip", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["decoder.pos_emb"]
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: no tensor 'decoder.pos_emb' in the weights"):
        load_official_tokenizer(folder)


def test_ids_outside_the_codebook():
    tok = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "semseg"))
    ids = torch.zeros(1, 16, dtype=torch.long)
    ids[0, 3] = 64
    with pytest.raises(TokenizerInputError, match=r"ids outside the codebook \(from 0 to 64\); valid ids are 0 to 63"):
        tok.decode(ids)
    with pytest.raises(TokenizerInputError, match=r"valid ids are 0 to 63"):
        interop.decode_tokens(tok, ids.reshape(1, 4, 4))
    with pytest.raises(TokenizerInputError, match=r"expected ids of shape \(B, 16\), got \(1, 15\)"):
        tok.decode(ids[:, :15])


def test_input_of_the_wrong_size_or_channels():
    clip = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "clip"))
    with pytest.raises(TokenizerInputError, match=r"expected \(B, 512, 4, 4\), got \(1, 256, 4, 4\)"):
        clip.encode(torch.randn(1, 256, 4, 4))
    with pytest.raises(TokenizerInputError, match=r"expected \(B, 512, H, W\), got \(1, 256, 4, 4\)"):
        interop.tokenize(clip, torch.randn(1, 256, 4, 4))
    semseg = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "semseg"))
    bad = torch.zeros(1, 32, 32, dtype=torch.long)
    bad[0, 5, 7] = 134
    one_line = r"^released semseg tokenizer: class ids from 0 to 134, expected 0 to 133$"
    with pytest.raises(TokenizerInputError, match=one_line):
        semseg.encode(bad)
    with pytest.raises(TokenizerInputError, match=r"expected integer class ids \(B, H, W\), got torch.float32"):
        semseg.encode(bad.float())
    with pytest.raises(TokenizerInputError, match=r"30 x 30 pixels are not a multiple of the patch size 8"):
        interop.tokenize(semseg, torch.zeros(1, 30, 30, dtype=torch.long))
    vec = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "dinov2-global"))
    with pytest.raises(TokenizerInputError, match=r"expected vectors of shape \(B, 768\), got \(2, 767\)"):
        vec.encode(torch.randn(2, 767))


# ------------------------------------------------------------------------ a tiny model without fixtures


def _tiny(values: str, **kw) -> OfficialVQVAE:
    base = dict(values=values, in_channels=1, out_channels=1, image_size=16, patch_size=4, enc_dim=32, enc_depth=1,
                dec_dim=32, dec_depth=1, latent_dim=8, codebook_size=10)
    torch.manual_seed(0)
    return OfficialVQVAE(OfficialVQVAEConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize("values,kw", [
    ("mask", dict(out_conv=True, post_mlp=False)),
    ("vector", dict(family="mlp", in_channels=12, out_channels=12, image_size=1, patch_size=1, enc_hidden=64,
                    dec_hidden=64, quantizer="memcodes", num_codebooks=4)),
])
def test_save_in_the_released_layout_and_load_back(tmp_path, values, kw):
    tok = _tiny(values, **kw)
    folder = save_official(tok, tmp_path / values)
    assert "_class_name" not in json.loads((folder / "config.json").read_text())
    back = load_tokenizer(folder)
    assert isinstance(back, OfficialVQVAE) and back.cfg.values == values
    for k, v in tok.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    x = torch.rand(3, 16, 16) if values == "mask" else torch.randn(3, 12)
    ids = back.encode(x)
    assert ids.shape == (3, tok.num_tokens) and torch.equal(ids, tok.encode(x))
    out = back.decode(ids)
    assert out.shape == x.shape
    if values == "mask":  # probabilities
        assert float(out.min()) >= 0 and float(out.max()) <= 1


# --------------------------------------------------------------------------------- SAM instances placed


class _StubMasks:
    """decode: code c of the first token selects a drawn 64 x 64 mask (the instance logic, apart from a model)."""

    def __init__(self, masks: list[torch.Tensor]):
        self.masks = masks

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.masks[int(i)] for i in ids[:, 0]])


def _square(lo: int, hi: int) -> torch.Tensor:
    m = torch.zeros(64, 64)
    m[lo:hi, lo:hi] = 1.0
    return m


def test_instances_are_placed_in_their_boxes_small_over_large_duplicates_merged():
    full, flat = torch.ones(64, 64), torch.full((64, 64), 0.5)
    full[0, 0] = 0.0  # a clear inside and outside (the span test), one corner pixel off
    tok = _StubMasks([full, _square(16, 48), flat])
    code = lambda c: (c,) + (0,) * 15  # noqa: E731
    big = Instance((0, 0, 128, 128), code(0))
    small = Instance((40, 40, 104, 104), code(1))  # a 64 px box: the mask's middle half, 32 px
    out = place_instances(tok, [small, big, Instance((40, 40, 104, 104), code(1)), Instance((5, 5, 9, 9), code(2))],
                          image_size=160)
    assert out.boxes.shape == (2, 4)  # the duplicate merged, the flat mask dropped
    assert torch.equal(out.boxes[0], torch.tensor([0.0, 0, 128, 128]))  # largest first
    assert int(out.ids[140, 140]) == 0 and int(out.ids[10, 100]) == 1
    assert bool((out.ids[60:84, 60:84] == 2).all())  # the small one painted over the big one
    assert int(out.ids[45, 45]) == 1  # inside the small box but outside its mask
    assert int((out.ids == 2).sum()) == 32 * 32


def test_no_instances_give_an_empty_map():
    out = place_instances(_StubMasks([]), [Instance((9, 9, 9, 20), (0,) * 16)], image_size=32)
    assert out.ids.shape == (32, 32) and int(out.ids.max()) == 0 and out.boxes.shape == (0, 4)
