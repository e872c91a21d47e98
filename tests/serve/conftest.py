"""A tiny pipeline for the web demo's tests: the pipeline tests' bundle (64 px VQ-VAEs, a text tokenizer, a dim-32
FourM) plus a ``tok_minilm_global`` vector tokenizer, so that retrieval has something to predict; the gallery's
caption embeddings come from a stand-in encoder (the real one takes seconds to load)."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from polymodal.config import ModelConfig
from polymodal.data.world import render_sample, text_embed
from polymodal.model import FourM
from polymodal.pipeline import Pipeline
from polymodal.serve import JobQueue, create_app
from polymodal.tokenizers.mlp import MLPTokenizer, MLPTokenizerConfig
from tests.conftest import single_thread

from ..pipeline.conftest import RGB, SEQUENCES, build_pipeline
from ..retrieval.test_index import FakeEncoder


def minilm_tokenizer() -> MLPTokenizer:
    torch.manual_seed(1)
    tok = MLPTokenizer(MLPTokenizerConfig(384, name="tok_minilm_global", num_tokens=4, codebook_size=16, code_dim=4,
                                          hidden=16, depth=1, l2_normalize=True)).eval()
    tok.register_modality(overwrite=True)
    return tok


def serve_pipeline(tmp_path_factory) -> Pipeline:
    base = build_pipeline(tmp_path_factory)
    glob = minilm_tokenizer()
    toks = {k: v for k, v in base.tokenizers.items()}
    toks[glob.cfg.name] = glob
    images = [k for k in toks if k not in ("text", glob.cfg.name)]
    cfg = base.model.config
    names = (*images, *SEQUENCES)
    torch.manual_seed(0)
    model_cfg = ModelConfig.preset("test", domains_in=(RGB.name, *names), domains_out=(*names, glob.cfg.name),
                                   dim=32, num_heads=2, vocab_sizes={s: cfg.modality(s).vocab_size for s in SEQUENCES})
    return Pipeline(FourM(model_cfg), toks)


@pytest.fixture(scope="session")
def serve_pipe(tmp_path_factory) -> Pipeline:
    return serve_pipeline(tmp_path_factory)


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch):
    monkeypatch.setattr(text_embed, "shared_encoder", lambda device="cpu": FakeEncoder())


@pytest.fixture
def app(serve_pipe):
    app = create_app(serve_pipe)
    yield app
    app.state.queue.stop()


@pytest.fixture
def stopped_app(serve_pipe):
    """The app with its worker not started: jobs stay queued until ``app.state.queue.start()``."""
    app = create_app(serve_pipe, queue=JobQueue(start=False))
    yield app
    app.state.queue.stop()


def png_url(seed: int = 1, index: int = 0, side: int = 64) -> str:
    import base64

    buf = io.BytesIO()
    Image.fromarray(render_sample(seed, index, side)["rgb"]).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def flat_png(side: int) -> bytes:
    """A one-colour PNG: a few KB however many pixels (what a decompression bomb looks like)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


one_thread = pytest.fixture(autouse=True)(single_thread)
