"""A tiny bundle for pipeline tests: untrained 64 px VQ-VAEs (rgb, depth, normal, semseg, canny edges), a text
tokenizer trained on a few world captions, and a `test`-preset FourM (dim 32) over pixels, tokens and sequences."""

from __future__ import annotations

import pytest
import torch

from polymodal import modalities
from polymodal.config import ModelConfig
from polymodal.data.world import SEMSEG_CLASSES, render_sample
from polymodal.modalities import Kind, Modality
from polymodal.model import FourM
from polymodal.pipeline import Pipeline
from polymodal.tokenizers.text import train_text_tokenizer
from polymodal.tokenizers.vqvae import ViTVQVAE, VQVAEConfig
from tests.conftest import single_thread

# "@pt": names of this test's own, so a registry shared with other tests never holds two definitions of one name
RGB = modalities.register(Modality("rgb@pt", Kind.PIXELS, grid=(4, 4), patch_size=16, channels=3))
SEQUENCES = ("caption", "det", "metadata", "color_palette")


def tiny_tokenizer(values: str, **kw) -> ViTVQVAE:
    cfg = VQVAEConfig(values, name=f"tok_{'canny_edge' if values == 'edge' else values}@pt", image_size=64,
                      patch_size=16, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2, codebook_size=32,
                      code_dim=8, **kw)
    tok = ViTVQVAE(cfg).eval()
    tok.register_modality(overwrite=True)
    return tok


def build_pipeline(tmp_path_factory) -> Pipeline:
    torch.manual_seed(0)
    toks = {t.cfg.name: t for t in (tiny_tokenizer("rgb"), tiny_tokenizer("depth"), tiny_tokenizer("normal"),
                                    tiny_tokenizer("semseg", channels=len(SEMSEG_CLASSES)),
                                    tiny_tokenizer("edge"))}
    corpus = tmp_path_factory.mktemp("corpus") / "captions.txt"
    corpus.write_text("\n".join(render_sample(0, i, 32)["caption"] for i in range(20)) + "\n")
    text = train_text_tokenizer([corpus], vocab_size=4500, extra_classes=("cube", "sphere", "torus", "cylinder",
                                                                           "cone", "person"))
    names = (*toks, *SEQUENCES)
    cfg = ModelConfig.preset("test", domains_in=(RGB.name, *names), domains_out=names, dim=32, num_heads=2,
                             vocab_sizes={s: text.vocab_size for s in SEQUENCES})
    return Pipeline(FourM(cfg), {**toks, "text": text})


@pytest.fixture(scope="session")
def pipe(tmp_path_factory) -> Pipeline:
    return build_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def bundle(pipe, tmp_path_factory):
    return pipe.save(tmp_path_factory.mktemp("bundle") / "tiny")


one_thread = pytest.fixture(autouse=True)(single_thread)
