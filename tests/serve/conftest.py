"""A tiny pipeline for the web demo's tests: the pipeline tests' bundle (64 px VQ-VAEs, a text tokenizer, a dim-32
FourM) plus a ``tok_minilm_global`` vector tokenizer, an input and an output as in the shipped default model (so
that retrieval has something to predict, and requests can send a vector); the gallery's caption embeddings come
from a stand-in encoder (the real one takes seconds to load)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from polymodal import modalities
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
    model_cfg = ModelConfig.preset("test", domains_in=(RGB.name, *names, glob.cfg.name),
                                   domains_out=(*names, glob.cfg.name),
                                   dim=32, num_heads=2, vocab_sizes={s: cfg.modality(s).vocab_size for s in SEQUENCES})
    return Pipeline(FourM(model_cfg), toks)


@pytest.fixture(scope="package", autouse=True)
def _registry_after_serve_tests():
    """The toy ``tok_minilm_global`` registered here (overwrite) goes with these tests: later tests load the shipped
    model, whose own ``tok_minilm_global`` (4x4, 256 codes) is refused beside another definition."""
    saved = dict(modalities._REGISTRY)
    yield
    modalities._REGISTRY.clear()
    modalities._REGISTRY.update(saved)


@pytest.fixture(scope="package")
def serve_pipe(tmp_path_factory) -> Pipeline:
    return serve_pipeline(tmp_path_factory)


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch, tmp_path_factory):
    """The gallery's encoder is the stand-in, so retrieval runs here without the ``text`` extra: its availability
    check (`text_embed.model_dir`, the packaged weights) is answered for the stand-in too."""
    monkeypatch.setattr(text_embed, "shared_encoder", lambda device="cpu": FakeEncoder())
    monkeypatch.setattr(text_embed, "model_dir", lambda: tmp_path_factory.getbasetemp())


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


class FileWatch:
    """Records every open, stat or image open of a path under ``root`` (the calls still go through): a request that
    names a file there must leave ``hits`` empty, whatever its answer."""

    def __init__(self, root: Path):
        self.root, self.hits = str(root), []

    def see(self, what: str, path) -> None:
        try:
            s = os.fsdecode(path)
        except TypeError:  # a file descriptor or an in-memory file: not a path
            return
        if self.root in os.path.abspath(os.path.expanduser(s)):
            self.hits.append(f"{what}({s})")

    def install(self, monkeypatch) -> FileWatch:
        import builtins

        def wrap(owner, name):
            real = getattr(owner, name)

            def watched(path, *args, **kwargs):
                self.see(name, path)
                return real(path, *args, **kwargs)

            monkeypatch.setattr(owner, name, watched)

        for owner, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "stat"), (os, "lstat"),
                            (Image, "open")):
            wrap(owner, name)
        return self


@pytest.fixture
def secret(tmp_path, monkeypatch) -> SimpleNamespace:
    """Files on the server's disk that no request may reach: ``files`` (boxes, metadata and a palette as JSON, a PNG)
    with ``missing`` paths beside them, ``marks`` (strings of their content that must never come back), and
    ``watch`` (a `FileWatch` over their folder, installed once the files are written)."""
    root = tmp_path / "secret"
    root.mkdir()
    files = {"det": root / "boxes.json", "metadata": root / "meta.json", "color_palette": root / "palette.json",
             "rgb": root / "scene.png"}
    files["det"].write_text(json.dumps([{"class": "zebracorn", "box": [0.1, 0.2, 0.3, 0.4]}]))
    files["metadata"].write_text(json.dumps({"SECRET_FIELD_7": 1, "brightness": 120}))
    files["color_palette"].write_text(json.dumps([[17, 171, 71], [3, 5, 7]]))
    Image.fromarray(render_sample(1, 0, 64)["rgb"]).save(files["rgb"])
    missing = {k: p.with_name("missing_" + p.name) for k, p in files.items()}
    marks = ("zebracorn", "SECRET_FIELD_7")
    return SimpleNamespace(root=root, files=files, missing=missing, marks=marks,
                           watch=FileWatch(root).install(monkeypatch))
