"""GalleryIndex: exact cosine and L2 search against brute force, folders, recall@k, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polymodal.data.world import iter_samples, synthesize, text_embed
from polymodal.retrieval import GalleryIndex, recall_at_k


def gallery(n: int = 50, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 3


def test_cosine_and_l2_match_brute_force():
    g, q = gallery(), gallery(7, seed=1)
    k = 6
    cos = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    hits = GalleryIndex(g, metric="cosine").search(q, k)
    want = cos.topk(k, dim=1)
    assert torch.equal(hits.indices, want.indices)
    torch.testing.assert_close(hits.scores, want.values, atol=1e-5, rtol=0)
    dist = torch.cdist(q.double(), g.double())
    hits = GalleryIndex(g, metric="l2").search(q, k)
    want = dist.topk(k, dim=1, largest=False)
    assert torch.equal(hits.indices, want.indices)
    torch.testing.assert_close(hits.scores.double(), want.values, atol=1e-4, rtol=1e-5)
    # The two metrics differ when the norms do: scaling a gallery vector moves it in L2 but not in cosine.
    g2 = g.clone()
    g2[0] = g[0] * 100
    assert torch.equal(GalleryIndex(g2).search(q, k).indices, GalleryIndex(g).search(q, k).indices)
    assert not torch.equal(GalleryIndex(g2, metric="l2").search(q, k).indices,
                           GalleryIndex(g, metric="l2").search(q, k).indices)


def test_keys_follow_the_rows_and_a_vector_finds_itself():
    g = gallery(20)
    keys = [f"img_{i:03d}.png" for i in range(20)]
    index = GalleryIndex(g, keys, metric="l2")
    hits = index.search(g[[3, 17]], 1)
    assert hits.keys == [["img_003.png"], ["img_017.png"]] and hits.indices.tolist() == [[3], [17]]
    assert hits.scores.abs().max() < 1e-3
    assert GalleryIndex(g).search(g[5], 1).keys == [[5]]  # a single (D,) query


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("keys", [None, [f"k{i}" for i in range(30)]])
def test_save_and_load_give_identical_results(tmp_path, metric, keys):
    index = GalleryIndex(gallery(30), keys, metric=metric, modality="minilm_global")
    q = gallery(5, seed=2)
    before = index.search(q, 4)
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "vectors.safetensors", "README.md"] + (["keys.json"] if keys else []))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["metric"] == metric and cfg["dim"] == 16 and cfg["count"] == 30
    loaded = GalleryIndex.load(folder)
    after = loaded.search(q, 4)
    assert after.keys == before.keys and torch.equal(after.indices, before.indices)
    assert torch.equal(after.scores, before.scores)
    assert torch.equal(loaded.vectors, index.vectors) and loaded.modality == "minilm_global"


def test_recall_at_k():
    ranked = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 1, 2]]
    assert recall_at_k(ranked, [1, 5, 3, 2], 1) == 0.25
    assert recall_at_k(ranked, [1, 5, 3, 2], 2) == 0.5
    assert recall_at_k(ranked, [1, 5, 3, 2], 3) == 0.75
    assert recall_at_k(torch.tensor(ranked), [{9, 1}, {4}, {0}, {2}], 3) == 0.75
    # Vectors with small noise find themselves: recall@1 over a real search.
    g = gallery(40)
    noisy = g + 0.01 * torch.randn(40, 16, generator=torch.Generator().manual_seed(3))
    assert recall_at_k(GalleryIndex(g).search(noisy, 5).keys, list(range(40)), 1) == 1.0
    with pytest.raises(ValueError, match="k=4"):
        recall_at_k(ranked, [1, 5, 3, 2], 4)
    with pytest.raises(ValueError, match="4 ranked lists but 3"):
        recall_at_k(ranked, [1, 5, 3], 1)


def test_bad_input_says_what_is_wrong(tmp_path):
    index = GalleryIndex(gallery(10))
    with pytest.raises(ValueError, match="dimension 8, the gallery 16"):
        index.search(torch.randn(2, 8), 3)
    with pytest.raises(ValueError, match="empty gallery"):
        GalleryIndex(torch.zeros(0, 16))
    with pytest.raises(ValueError, match="empty gallery"):
        GalleryIndex.from_samples([], modality="minilm_global")
    with pytest.raises(ValueError, match="k must be an integer from 1 to the gallery size 10"):
        index.search(torch.randn(16), 11)
    with pytest.raises(ValueError, match="NaN"):
        index.search(torch.full((16,), float("nan")), 1)
    with pytest.raises(ValueError, match="float vectors.*decode them first"):
        index.search(torch.zeros(1, 16, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="zero vector"):
        GalleryIndex(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="metric must be one of"):
        GalleryIndex(gallery(3), metric="dot")
    with pytest.raises(ValueError, match="unique"):
        GalleryIndex(gallery(2), [1, 1])
    with pytest.raises(FileNotFoundError, match="not a gallery index folder"):
        GalleryIndex.load(tmp_path)


class FakeEncoder:
    """Stands in for the sentence encoder (seconds to load): a unit vector per caption from its hash."""

    def info(self) -> dict:
        return {"encoder": "fake", "package": "none", "version": "0", "dim": text_embed.EMB_DIM}

    def embed_caption(self, text: str):
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        v = rng.standard_normal(text_embed.EMB_DIM).astype(np.float32)
        return v / np.linalg.norm(v), rng.standard_normal((3, text_embed.EMB_DIM)).astype(np.float32)


def test_gallery_from_a_world_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(text_embed, "shared_encoder", lambda device="cpu": FakeEncoder())
    world = tmp_path / "world"
    synthesize(world, 5, 32, seed=0, shard_size=3, text_embeddings=True)
    index = GalleryIndex.from_world(world)
    assert len(index) == 5 and index.dim == 384 and index.keys == [0, 1, 2, 3, 4]
    assert GalleryIndex.load(index.save(tmp_path / "idx")).source == str(world)
    stored = [s["minilm_global"] for s in iter_samples(world, modalities=["minilm_global"])]
    assert index.search(np.stack(stored), 1).keys == [[i] for i in range(5)]
    assert len(GalleryIndex.from_world(world, limit=2)) == 2
    plain = tmp_path / "plain"
    synthesize(plain, 1, 32, seed=0)
    with pytest.raises(KeyError, match="stores no 'minilm_global'.*--text-embeddings"):
        GalleryIndex.from_world(plain)
