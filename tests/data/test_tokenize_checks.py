"""`polymodal data tokenize` refuses, before writing anything, a ``--tokenizer KEY=DIR`` whose key names no
modality of the dataset, or whose tokenizer does not read what the key holds (by its config: values, vector width;
by a probe of the first sample: channels, classes). One line, exit code 2, no output folder."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.data.pretokenize import KEY_VALUES, check_fit
from polymodal.data.world import SEMSEG_CLASSES, synthesize
from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig, ViTVQVAE
from polymodal.tokenizers.text import train_text_tokenizer
from polymodal.tokenizers.vqvae import VQVAEConfig

TINY = dict(image_size=32, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1, num_heads=4, codebook_size=64)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A 4-sample world (shards + dataset.json), a folder-per-modality tree, and tiny tokenizers."""
    root = tmp_path_factory.mktemp("checks")
    synthesize(root / "world", 4, 32, seed=0, shard_size=2)
    torch.manual_seed(0)
    for values, kw in (("rgb", {}), ("depth", {}), ("semseg", {"channels": 3})):
        ViTVQVAE(VQVAEConfig(values, name=f"tok_{values}@ck32", **TINY, **kw)).save_pretrained(root / f"tok_{values}")
    MLPTokenizer(MLPTokenizerConfig(8, name="tok_feat@ck", num_tokens=2, codebook_size=16, code_dim=4, hidden=16,
                                    depth=1)).save_pretrained(root / "tok_vec8")
    (root / "corpus.txt").write_text("a red cube on a floor\na blue sphere near a wall\n")
    train_text_tokenizer([root / "corpus.txt"], vocab_size=4400).save_pretrained(root / "tok_text")
    tree = root / "tree"  # the folder layout: sample "a" with an image, a 6-d feature and a key of its own
    for sub in ("rgb", "hf_feature", "thermal"):
        (tree / sub).mkdir(parents=True)
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tree / "rgb" / "a.png"), img)
    cv2.imwrite(str(tree / "thermal" / "a.png"), img)
    np.save(tree / "hf_feature" / "a.npy", np.ones(6, np.float16))
    return root


def tokenize(d, out, capsys, dataset, *pairs) -> tuple[int, str]:
    args = ["data", "tokenize", str(dataset), "--tokenizer", *[f"{k}={d / v}" for k, v in pairs],
            "--out", str(out), "--quiet"]
    rc = main(args)
    err = capsys.readouterr().err
    if rc == 2:  # refused: one line, nothing written
        assert err.startswith("polymodal data tokenize: --tokenizer ") and err.count("\n") == 1, err
        assert "Traceback" not in err and not out.exists()
    return rc, err.strip()


@pytest.mark.parametrize("pairs, message", [
    ((("bogus", "tok_rgb"),), "'bogus' names no modality (the dataset holds: rgb, depth, normal, semseg, instance"),
    ((("rgb", "tok_rgb"), ("depth", "tok_rgb")),
     "depth={D}/tok_rgb: a tokenizer of rgb images, 32 px (tok_rgb@ck32, ViTVQVAE), but depth holds depth images"),
    ((("minilm_global", "tok_vec8"),), "'minilm_global' is a modality this dataset does not hold"),
    ((("caption", "tok_rgb"),), "but caption holds text"),
    ((("rgb", "tok_text"),), "rgb={D}/tok_text: a tokenizer of text (TextTokenizer), but rgb holds rgb images"),
    ((("det", "tok_vec8"),), "a tokenizer of vectors of 8 (tok_feat@ck, MLPTokenizer), but det holds text"),
    ((("instance", "tok_text"),), "no way to tokenize 'instance' with a text tokenizer"),
])
def test_a_key_or_tokenizer_that_does_not_fit_the_world_is_refused(d, tmp_path, capsys, pairs, message):
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "world", *pairs)
    assert rc == 2 and message.replace("{D}", str(d)) in err, err


def test_what_the_config_cannot_tell_the_first_sample_shows(d, tmp_path, capsys):
    # A semseg tokenizer of 3 classes where the world has 11: its config is a fine semseg tokenizer's.
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "world", ("semseg", "tok_semseg"))
    assert rc == 2
    assert re.search(rf"semseg={re.escape(str(d))}/tok_semseg does not fit the dataset's semseg \(sample 00000000: "
                     r"tok_semseg@ck32 \(semseg\) tokenizer: class ids from 0 to \d+, expected 0 to 2\)$", err), err


def test_shards_that_declare_no_keys_take_known_keys_only(d, tmp_path, capsys):
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "world" / "shard-*.tar", ("bogus", "tok_rgb"))
    assert rc == 2 and "'bogus' names no modality (known: canny_edge, caption, clip, " in err
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "world" / "shard-*.tar", ("rgb", "tok_rgb"))
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "tokens.json").read_text())["count"] == 4


def test_a_folder_trees_own_keys_are_probed_by_their_first_sample(d, tmp_path, capsys):
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "tree", ("hf_feature", "tok_vec8"))
    assert rc == 2 and f"hf_feature={d}/tok_vec8 does not fit the dataset's hf_feature (sample a: " in err
    assert "expected (B, 8) vectors, got shape (1, 6)" in err
    # A key only this dataset has (its folder) is a modality of it: an RGB tokenizer reads its 3-channel images.
    rc, err = tokenize(d, tmp_path / "out", capsys, d / "tree", ("thermal", "tok_rgb"))
    assert rc == 0, err
    assert "tok_rgb@ck32" in json.loads((tmp_path / "out" / "tokens.json").read_text())["modalities"]


def test_every_image_key_has_a_values_kind_a_tokenizer_config_can_hold():
    # The table's image values are exactly those a ViT VQ-VAE can be configured for (VQVAEConfig refuses others).
    from polymodal.tokenizers.vqvae import VALUES

    assert {v for v in KEY_VALUES.values() if v not in ("vector", "text")} <= set(VALUES)
    assert len(SEMSEG_CLASSES) > 3  # the probe case above needs more world classes than the tokenizer's 3


def test_check_fit_accepts_what_fits_and_checks_a_registered_vectors_width(d):
    from polymodal.tokenizers import load_tokenizer

    with pytest.raises(ValueError, match=r"a tokenizer of vectors of 8 \(tok_feat@ck, MLPTokenizer\), but "
                                         r"minilm_global holds vectors of 384$"):
        check_fit("minilm_global", load_tokenizer(d / "tok_vec8"), "DIR")
    for key, folder in (("rgb", "tok_rgb"), ("depth", "tok_depth"), ("caption", "tok_text"), ("det", "tok_text"),
                        ("hf_feature", "tok_vec8")):
        check_fit(key, load_tokenizer(d / folder), str(d / folder))


def test_the_released_4m_tokenizers_are_checked_by_their_configs_too():
    from polymodal.tokenizers import load_tokenizer

    from ..conftest import fixtures_dir

    folder = fixtures_dir("ml4m-4m21-tiny-tokenizers")
    depth, vector = load_tokenizer(folder / "tok_depth@224"), load_tokenizer(folder / "tok_dinov2_global")
    check_fit("depth", depth, "D")
    check_fit("dinov2_global", vector, "V")
    with pytest.raises(ValueError, match=r"a tokenizer of depth images, 224 px \(tok_depth@224, DiVAE\), but rgb "
                                         r"holds rgb images$"):
        check_fit("rgb", depth, "D")
    with pytest.raises(ValueError, match=r"vectors of 768 \(tok_dinov2_global, OfficialVQVAE\), but minilm_global "
                                         r"holds vectors of 384$"):
        check_fit("minilm_global", vector, "V")
