"""retrieve: a prediction (ids or vectors) -> the gallery's nearest items, and the picture of the matches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.data.world import synthesize
from polymodal.retrieval import GalleryIndex, draw_matches, retrieve, world_pictures
from polymodal.viz import DecodeError, grid_size, picture

from ..viz.helpers import mlp, vqvae


def test_predicted_ids_are_decoded_and_find_their_gallery_items():
    tok = mlp(12)
    g = torch.Generator().manual_seed(0)
    gallery_ids = torch.randint(0, tok.vocab_size, (10, tok.num_tokens), generator=g)
    index = GalleryIndex(tok.decode(gallery_ids), [100 + i for i in range(10)])
    conditions = {"caption": ["a sphere", "a torus"]}
    seen = []

    def predict(cond):
        seen.append(cond)
        return gallery_ids[[3, 7]]

    result = retrieve(predict, index, conditions, modality="tok_vec_global", k=3, tokenizer=tok)
    assert seen == [conditions]
    assert [row[0] for row in result.hits.keys] == [103, 107]
    assert result.vectors.shape == (2, 12) and torch.allclose(result.hits.scores[:, 0], torch.ones(2), atol=1e-5)
    # Vectors are searched as they are.
    vec = retrieve(lambda c: index.vectors[5], index, {}, modality="tok_vec_global", k=1)
    assert vec.hits.keys == [[105]]


def test_retrieve_errors_are_clear():
    tok = mlp(12)
    index = GalleryIndex(torch.randn(4, 12, generator=torch.Generator().manual_seed(1)))
    ids = torch.zeros(1, tok.num_tokens, dtype=torch.long)
    with pytest.raises(ValueError, match="pass its tokenizer"):
        retrieve(lambda c: ids, index, {}, modality="tok_vec_global")
    with pytest.raises(ValueError, match="dimension 5, the gallery 12"):
        retrieve(lambda c: torch.randn(1, 5), index, {}, modality="tok_vec_global", k=1)
    with pytest.raises(ValueError, match="not \\(B, D\\) vectors"):
        retrieve(lambda c: torch.zeros(1, 16, dtype=torch.long), index, {}, modality="tok_rgb@16",
                 tokenizer=vqvae("rgb"))
    with pytest.raises(DecodeError, match="input only"):  # ids of a modality that has none
        retrieve(lambda c: ids, index, {}, modality="rgb@224", tokenizer=tok)


def test_matches_are_drawn_one_row_per_query(tmp_path):
    world = tmp_path / "world"
    synthesize(world, 4, 32, seed=0, shard_size=4)
    rgb = world_pictures(world)
    assert rgb(2).shape == (32, 32, 3) and rgb(2).dtype == np.uint8
    vectors = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    index = GalleryIndex(vectors)
    result = retrieve(lambda c: vectors[[1, 2]], index, {}, modality="v", k=3)
    queries = [[("query", picture("caption", f"query {b}", size=40))] for b in range(2)]
    img = draw_matches(result, rgb, queries=queries, size=40)
    assert img.size == grid_size(2, 4, tile=40)
    assert draw_matches(result, rgb, size=40).size == grid_size(2, 3, tile=40)
    with pytest.raises(ValueError, match="2 queries searched but 1"):
        draw_matches(result, rgb, queries=queries[:1])


def test_cli_builds_and_searches_a_world_gallery(tmp_path, monkeypatch, capsys):
    from polymodal.cli import main
    from polymodal.data.world import text_embed

    from .test_index import FakeEncoder

    monkeypatch.setattr(text_embed, "shared_encoder", lambda device="cpu": FakeEncoder())
    world, idx = tmp_path / "world", tmp_path / "idx"
    synthesize(world, 4, 32, seed=0, shard_size=4, text_embeddings=True)
    assert main(["retrieve", "build", str(world), "--out", str(idx)]) == 0
    assert main(["retrieve", "search", str(idx), "--samples", "2", "0", "--k", "2", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "#2: #2 1.000" in out and "#0: #0 1.000" in out
    assert (idx / "matches.png").is_file()
    assert main(["retrieve", "search", str(idx), "--samples", "0", "--k", "5"]) == 2
    assert capsys.readouterr().err.startswith("polymodal retrieve search: k must be an integer")


def test_a_model_predicts_the_embedding_end_to_end():
    """A tiny FourM generates the global tokens, its MLP tokenizer decodes them, the index searches (greedy:
    the same matches every time)."""
    from polymodal.config import ModelConfig
    from polymodal.generation import Plan, Step
    from polymodal.model import FourM
    from polymodal.retrieval import model_predictor
    from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig

    from ..conftest import TINY_MODS

    rgb, glob = TINY_MODS[0], TINY_MODS[2]  # rgb@test pixels; tok_global@test: 2 x 2 tokens of 30 codes
    torch.manual_seed(0)
    model = FourM(ModelConfig.preset("test", domains_in=(rgb.name,), domains_out=(glob.name,), dim=32,
                                     num_heads=2)).eval()
    tok = MLPTokenizer(MLPTokenizerConfig(12, name=glob.name, num_tokens=4, codebook_size=30, code_dim=4,
                                          hidden=16, depth=1)).eval()
    g = torch.Generator().manual_seed(0)
    index = GalleryIndex(tok.decode(torch.randint(0, 30, (8, 4), generator=g)))
    conditions = {rgb.name: torch.rand(2, 3, *rgb.image_size, generator=g)}
    predict = model_predictor(model, glob.name, steps=2)
    a = retrieve(predict, index, conditions, modality=glob.name, k=3, tokenizer=tok)
    b = retrieve(predict, index, conditions, modality=glob.name, k=3, tokenizer=tok)
    assert a.vectors.shape == (2, 12) and len(a.hits.keys) == 2 and all(len(r) == 3 for r in a.hits.keys)
    assert a.hits.keys == b.hits.keys and torch.equal(a.vectors, b.vectors)
    with pytest.raises(ValueError, match="not 'tok_a@test'"):
        model_predictor(model, "tok_a@test", plan=Plan((Step(glob.name),)))
