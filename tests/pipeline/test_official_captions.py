"""`generate --index`: the nearest gallery captions of a released model's predicted global vectors (the fixture
release: tiny 4M-21 + its tokenizers), checked against a brute-force cosine search written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.data.world import read_sample, synthesize
from polymodal.retrieval import GalleryIndex
from tests.conftest import single_thread

from .test_official import FAST, local_args, photo  # noqa: F401 - photo is a fixture

one_thread = pytest.fixture(autouse=True)(single_thread)
CAPTIONS = [f"a scene number {i}" for i in range(12)]


def vectors(n: int, d: int = 768, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def brute_force(gallery: torch.Tensor, q: torch.Tensor, k: int) -> list[int]:
    sims = (gallery / gallery.norm(dim=1, keepdim=True)) @ (q / q.norm())
    return np.argsort(-sims.numpy(), kind="stable")[:k].tolist()


@pytest.fixture
def caption_index(tmp_path):
    gallery = vectors(len(CAPTIONS))
    GalleryIndex(gallery, CAPTIONS, modality="dinov2_global").save(tmp_path / "gallery")
    return tmp_path / "gallery", gallery


def test_rgb_to_all_writes_the_nearest_captions_of_the_global(caption_index, photo, tmp_path, capsys):  # noqa: F811
    folder, gallery = caption_index
    out = tmp_path / "out"
    rc = main(["generate", *local_args(), "--from", f"rgb={photo}", "--plan", "rgb_to_all", "--out", str(out),
               "--index", str(folder), "--k", "3", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    predicted = torch.tensor(json.loads((out / "tok_dinov2_global.json").read_text()))
    record = json.loads((out / "tok_dinov2_global_captions.json").read_text())
    expected = [CAPTIONS[i] for i in brute_force(gallery, predicted, 3)]
    assert [h["caption"] for h in record["nearest"]] == expected and not any("key" in h for h in record["nearest"])
    assert (record["index"], record["metric"], record["k"]) == (str(folder), "cosine", 3)
    scores = [h["score"] for h in record["nearest"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    line = next(x for x in captured.out.splitlines() if x.startswith("tok_dinov2_global nearest captions: "))
    assert line.split(": ", 1)[1].split(" | ")[0] == f"{expected[0]!r} {scores[0]:.3f}"


def test_a_world_gallery_gives_its_samples_captions(photo, tmp_path, capsys):  # noqa: F811
    """Integer keys: the captions are those of the world samples they number (the index's own world folder)."""
    world = tmp_path / "world"
    synthesize(world, 6, 32, seed=0, shard_size=6)
    gallery = vectors(6, seed=1)
    GalleryIndex(gallery, modality="dinov2_global", source=str(world)).save(tmp_path / "gallery")
    out = tmp_path / "out"
    rc = main(["generate", *local_args(), "--from", f"rgb={photo}", "--to", "dinov2_global", "--out", str(out),
               "--index", f"dinov2_global={tmp_path / 'gallery'}", "--k", "2"])
    assert rc == 0, capsys.readouterr().err
    predicted = torch.tensor(json.loads((out / "tok_dinov2_global.json").read_text()))
    record = json.loads((out / "tok_dinov2_global_captions.json").read_text())
    rows = brute_force(gallery, predicted, 2)
    assert [h["key"] for h in record["nearest"]] == rows
    assert [h["caption"] for h in record["nearest"]] == [read_sample(world, i, modalities=["caption"])["caption"]
                                                         for i in rows]


@pytest.mark.parametrize(("case", "message"), [
    ("width", "--index {gallery}: tok_dinov2_global predicts vectors of 768, the index holds vectors of 384"),
    ("not_run", "--index {gallery}: the index holds dinov2_global, and this run's global vectors are none: give "
                "the output as --index DOMAIN=FOLDER"),
    ("no_world", "--index {gallery}: its keys are sample numbers and it names no world folder to read their "
                 "captions from; key a gallery by its captions (GalleryIndex(vectors, keys=captions))"),
    ("k", "--k: must be a whole number from 1 to the gallery size 12 ({gallery}), got 13"),
    ("domain", "--index tok_depth@224={gallery}: tok_depth@224 is not a global vector this run predicts (those "
               "are: tok_dinov2_global)"),
])
def test_a_gallery_that_cannot_answer_is_one_line_and_writes_nothing(case, message, photo, tmp_path,  # noqa: F811
                                                                     capsys):
    gallery = tmp_path / "gallery"
    n = len(CAPTIONS)
    GalleryIndex(vectors(n, 384 if case == "width" else 768), None if case == "no_world" else CAPTIONS,
                 modality="dinov2_global").save(gallery)
    to = "caption" if case == "not_run" else "dinov2_global"
    spec = f"tok_depth@224={gallery}" if case == "domain" else str(gallery)
    out = tmp_path / "out"
    rc = main(["generate", *local_args(), "--from", f"rgb={photo}", "--to", to, "--out", str(out), "--index", spec,
               *(["--k", "13"] if case == "k" else [])])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"polymodal generate: {message.format(gallery=gallery)}"
    assert not out.exists()


def test_retrieve_predicts_a_releases_global_and_searches(caption_index):
    """`polymodal.retrieval.query` (what `polymodal retrieve` runs) takes a released model's DINOv2 global too."""
    from polymodal.pipeline import Pipeline
    from polymodal.retrieval import embedding_outputs, query

    from ..conftest import fixtures_dir

    folder, gallery = caption_index
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), tokenizers={
        "tok_dinov2_global": fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global")})
    assert embedding_outputs(pipe) == ["tok_dinov2_global"] and pipe.tokenizers.loaded == ()  # asked, none loaded
    rgb = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    q = query(pipe, folder, {"rgb@224": rgb}, k=3)
    assert q.modality == "tok_dinov2_global" and q.result.vectors.shape == (1, 768)
    assert q.result.hits.keys[0] == [CAPTIONS[i] for i in brute_force(gallery, q.result.vectors[0], 3)]
