"""`Pipeline.embed` and ``polymodal embed``: features of user values through the pipeline's own inputs, the file the
command writes (names in order, features equal to the library's), unreadable images skipped and named, and the
refusals (empty folder, nothing readable) as one line with exit code 2 and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from polymodal.cli import main
from polymodal.data.world import render_sample
from polymodal.pipeline import PipelineError


@pytest.fixture(scope="module")
def pictures():
    return [render_sample(1, i, 64)["rgb"] for i in range(3)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pictures):
    d = tmp_path_factory.mktemp("world")
    # names whose sorted order is not the order they are written in
    for name, rgb in zip(("b.png", "a.png", "sub/c.png"), pictures):
        (d / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rgb).save(d / name)
    return d


def test_embed_values_features_and_batch_independence(pipe, pictures):
    f = pipe.embed({"rgb": list(pictures)})
    grid = pipe.model.config.modality("rgb@pt").num_tokens  # every patch of each image is a token
    assert f.names == ("rgb@pt",) and f.tokens.shape == (3, grid, pipe.model.config.dim) and bool(f.valid.all())
    assert f.positions[0].tolist() == list(range(grid))
    torch.testing.assert_close(f.pooled, f.tokens.mean(dim=1))
    one = pipe.embed({"rgb": pictures[1]})
    torch.testing.assert_close(one.pooled[0], f.pooled[1], atol=1e-5, rtol=1e-5)


def test_embed_several_modalities(pipe, pictures):
    f = pipe.embed({"rgb": list(pictures[:2]), "caption": ["a red cube", "two blue spheres and a cone"]})
    assert f.names == ("rgb@pt", "caption")  # domains_in order
    assert f.has("caption").all()
    # caption tokens: its ids up to and with [EOS]; different lengths, so the shorter sample has padding
    counts = (f.modality == 1).sum(dim=1)
    assert counts[0] < counts[1] and f.valid.sum(dim=1).tolist() == (counts + 16).tolist()
    alone = pipe.embed({"rgb": pictures[0]})
    assert not torch.allclose(alone.pooled[0], f.modality_mean("rgb@pt")[0], atol=1e-3)  # the caption is attended


def test_embed_refuses_nothing(pipe):
    with pytest.raises(PipelineError, match="^nothing to embed: give at least one input"):
        pipe.embed({})


def test_embed_command_writes_features_in_file_order(bundle, pipe, folder, pictures, tmp_path, capsys):
    out = tmp_path / "f" / "features.safetensors"
    rc = main(["embed", "--model", str(bundle), "--images", str(folder), "--out", str(out), "--tokens",
               "--batch-size", "2", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"embedded 3 images (a.png ... sub/c.png) -> {out}" in captured.out
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        features, tokens = f.get_tensor("features"), f.get_tensor("tokens")
    assert json.loads(meta["files"]) == ["a.png", "b.png", "sub/c.png"]
    assert json.loads(meta["skipped"]) == [] and meta["input"] == "rgb@pt"
    assert features.shape == (3, 32) and tokens.shape == (3, 16, 32)
    # row i is file i: a.png holds pictures[1], b.png pictures[0]
    expected = pipe.embed({"rgb": [pictures[1], pictures[0], pictures[2]]})
    torch.testing.assert_close(features, expected.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens, expected.tokens, atol=1e-5, rtol=1e-5)


def test_unreadable_image_is_skipped_and_named(bundle, folder, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ok.png").write_bytes((folder / "a.png").read_bytes())
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "m.safetensors"
    rc = main(["embed", "--model", str(bundle), "--images", str(mixed), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "skipped 1 unreadable image:" in captured.out and "broken.png" in captured.out.split("skipped 1")[1]
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["files"]) == ["ok.png"]
        assert [s[0] for s in json.loads(f.metadata()["skipped"])] == ["broken.png"]
        assert f.get_tensor("features").shape == (1, 32)


def test_empty_folder_and_nothing_readable_exit_2(bundle, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    out = tmp_path / "e.safetensors"
    assert main(["embed", "--model", str(bundle), "--images", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"polymodal embed: no .jpg/.jpeg/.png/.webp/.tif/.tiff/.bmp/.gif images under {empty}\n"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    assert main(["embed", "--model", str(bundle), "--images", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"polymodal embed: none of the 1 images under {bad} could be read (first: x.jpg: ")
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_embed_arrays_of_another_size_are_resized_with_a_notice(pipe):
    notices = []
    f = pipe.embed({"rgb": np.zeros((80, 80, 3), np.uint8)}, notify=notices.append)
    assert f.tokens.shape[:2] == (1, 16) and notices == ["rgb@pt: 80x80 image resized to 64x64"]


def test_a_folder_of_webp_tiff_bmp_and_gif_is_embedded(bundle, pipe, pictures, tmp_path, capsys):
    """Only .jpg/.jpeg/.png files were listed: a folder of other formats open_image reads was 'no images', and such
    files beside PNGs were left out without a word."""
    d = tmp_path / "formats"
    d.mkdir()
    names = ("a.webp", "b.tif", "c.BMP", "d.gif")
    for name, rgb in zip(names, [*pictures, pictures[0]]):
        Image.fromarray(rgb).save(d / name, lossless=True) if name.endswith("webp") else \
            Image.fromarray(rgb).save(d / name)
    out = tmp_path / "features.safetensors"
    assert main(["embed", "--model", str(bundle), "--images", str(d), "--out", str(out), "--quiet"]) == 0, \
        capsys.readouterr().err
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["files"]) == list(names)
        features = f.get_tensor("features")
    # lossless formats: the same features as the arrays (the GIF's palette may move a colour a little)
    expected = pipe.embed({"rgb": [pictures[0], pictures[1], pictures[2]]}).pooled
    torch.testing.assert_close(features[:3], expected, atol=1e-4, rtol=1e-4)
