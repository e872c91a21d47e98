"""`polymodal retrieve` with the shipped model, as the README spells it but without ``--model`` (the default, as in
generate, demo, eval and serve): its 16 global tokens are predicted in the pipeline's default steps (one greedy
step from an image, several from a caption), never a count the schedule refuses."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from polymodal.cli import main
from polymodal.data.world import render_sample, synthesize
from polymodal.pipeline import Pipeline
from polymodal.retrieval import GalleryIndex, query

from ..shipped import shipped_registry

shipped = pytest.fixture(shipped_registry)
HIT = re.compile(r"#(\d+) (-?\d\.\d{3})")


@pytest.fixture()
def gallery(shipped, tmp_path):
    """A 6-item gallery of minilm_global vectors (the shipped tokenizer's decodings of random ids) over a 6-sample
    world, whose item 4 is the embedding the shipped model predicts from the scene image."""
    world = tmp_path / "world"
    synthesize(world, 6, 32, seed=0, shard_size=6)
    image = tmp_path / "scene.png"
    Image.fromarray(render_sample(1, 5, 64)["rgb"]).save(image)
    pipe = Pipeline.from_pretrained(shipped)
    tok = pipe.tokenizers["tok_minilm_global"]
    vectors = tok.decode(torch.randint(0, tok.vocab_size, (6, tok.num_tokens), generator=torch.Generator()
                                       .manual_seed(0))).float()
    first = GalleryIndex(vectors, modality="minilm_global", source=str(world))
    predicted = query(pipe, first, {"rgb": image}, k=1).result.vectors[0]
    vectors[4] = predicted
    GalleryIndex(vectors, modality="minilm_global", source=str(world)).save(tmp_path / "index")
    return {"index": tmp_path / "index", "image": image, "vectors": vectors}


def hits(line: str) -> list[tuple[int, float]]:
    return [(int(k), float(s)) for k, s in HIT.findall(line.split(":", 1)[1])]


def test_retrieve_without_model_uses_the_shipped_one_and_finds_its_own_prediction(gallery, tmp_path, capsys):
    out = tmp_path / "matches.png"
    rc = main(["retrieve", "--index", str(gallery["index"]), "--from", f"rgb={gallery['image']}", "--k", "3",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    line = next(x for x in captured.out.splitlines() if x.startswith("query 0 (tok_minilm_global): "))
    found = hits(line)
    assert len(found) == 3 and found[0] == (4, 1.0)  # the gallery item that is the prediction itself, cosine 1
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)
    assert Image.open(out).size[0] > 0


def test_retrieve_from_a_caption_decodes_16_tokens_in_several_steps(gallery, capsys):
    # Before: a fixed 8 steps over 16 tokens, which the cosine schedule refuses, so every query failed.
    rc = main(["retrieve", "--index", str(gallery["index"]), "--from", "caption=a red cube near a wall", "--k", "6"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    found = hits(captured.out.splitlines()[0])
    assert sorted(k for k, _ in found) == list(range(6))  # k = the gallery: every item once
