"""`polymodal retrieve` with bad input found by the session 9 audit: each one line on stderr and exit code 2, where
before it was a traceback (an --out that is a file, a gallery world shorter than the index or with a corrupt shard
under `retrieve --from`) or a line that named the wrong thing (--limit 0: "no samples with 'minilm_global'";
--size 0: "height and width must be > 0")."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from polymodal.cli import main
from polymodal.config import ModelConfig
from polymodal.data.world import render_sample, synthesize, text_embed
from polymodal.model import FourM
from polymodal.pipeline import Pipeline
from polymodal.retrieval import GalleryIndex
from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig

from ..pipeline.conftest import RGB
from .test_index import FakeEncoder

VEC = "tok_auditvec_global"  # this test's own name (the modality registry is shared by the session)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny bundle predicting a 12-d vector, a 4-sample world with caption embeddings, an index over 6 vectors
    whose pictures come from that world (2 too few), an index of that world's own vectors, a 6-sample world whose
    one shard is truncated, and a scene image."""
    d = tmp_path_factory.mktemp("audit_cli")
    torch.manual_seed(0)
    vec = MLPTokenizer(MLPTokenizerConfig(12, name=VEC, num_tokens=4, codebook_size=16, code_dim=4, hidden=16,
                                          depth=1)).eval()
    vec.register_modality(overwrite=True)
    cfg = ModelConfig.preset("test", domains_in=(RGB.name, VEC), domains_out=(VEC,), dim=32, num_heads=2)
    bundle = Pipeline(FourM(cfg), {VEC: vec}).save(d / "bundle")
    saved = text_embed.shared_encoder
    text_embed.shared_encoder = lambda device="cpu": FakeEncoder()
    try:
        synthesize(d / "world", 4, 32, seed=0, shard_size=2, text_embeddings=True)
    finally:
        text_embed.shared_encoder = saved
    GalleryIndex(torch.randn(6, 12), modality="auditvec_global", source=str(d / "world")).save(d / "index")
    broken = d / "broken"
    synthesize(broken, 6, 32, seed=0, shard_size=6)
    shard = broken / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    GalleryIndex.from_world(d / "world").save(d / "world_index")
    Image.fromarray(render_sample(1, 5, 64)["rgb"]).save(d / "scene.png")
    (d / "a_file").write_text("not a folder")
    return d, bundle


def _run(args, capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    return err


def test_build_into_a_file_is_one_line(files, capsys):
    d, _ = files
    err = _run(["retrieve", "build", str(d / "world"), "--out", str(d / "a_file")], capsys)
    assert err == f"polymodal retrieve build: --out {d / 'a_file'} is a file, not a folder\n"  # the commands' line


def test_build_below_a_file_is_one_line(files, capsys):
    d, _ = files
    out = d / "a_file" / "index"
    err = _run(["retrieve", "build", str(d / "world"), "--out", str(out)], capsys)
    assert err == f"polymodal retrieve build: --out {out}: {d / 'a_file'} is a file, not a folder\n"


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_build_with_a_limit_below_one_names_the_limit(files, capsys, limit):
    d, _ = files
    err = _run(["retrieve", "build", str(d / "world"), "--out", str(d / "idx"), "--limit", limit], capsys)
    assert err == f"polymodal retrieve build: limit must be at least 1 (samples to index), got {limit}\n"
    assert not (d / "idx").exists()


def test_a_gallery_world_shorter_than_the_index_is_one_line(files, capsys):
    d, bundle = files
    err = _run(["retrieve", "--model", str(bundle), "--index", str(d / "index"), "--from", f"rgb={d / 'scene.png'}",
                "--k", "6"], capsys)
    assert re.match(r"polymodal retrieve: sample [45] is out of range: .*world holds 4 samples$", err), err


def test_a_corrupt_gallery_world_is_one_line(files, capsys):
    d, bundle = files
    err = _run(["retrieve", "--model", str(bundle), "--index", str(d / "index"), "--from", f"rgb={d / 'scene.png'}",
                "--k", "6", "--gallery-world", str(d / "broken")], capsys)
    assert err.startswith("polymodal retrieve: shard ") and "truncated or corrupt" in err


@pytest.mark.parametrize("cmd", ["search", "query"])
def test_a_tile_size_below_one_names_size(files, capsys, cmd):
    d, bundle = files
    args = (["retrieve", "search", str(d / "world_index"), "--samples", "0", "--k", "2"] if cmd == "search" else
            ["retrieve", "--model", str(bundle), "--index", str(d / "index"), "--from", f"rgb={d / 'scene.png'}"])
    err = _run([*args, "--size", "0"], capsys)
    assert err.endswith("--size must be at least 1 pixel, got 0\n"), err


@pytest.mark.parametrize("keys", ["numbers", "captions"])
def test_search_draws_keys_as_text_when_the_gallery_has_no_pictures(files, tmp_path, capsys, keys):
    """A gallery without a world folder (built in Python) or keyed by captions has no pictures to show: `retrieve
    --from` draws its keys as text, but `retrieve search --world` failed with " is not a world dataset" (an empty
    path) or "invalid literal for int()" (a caption read as a sample number)."""
    d, _ = files
    stored = GalleryIndex.load(d / "world_index")
    names = None if keys == "numbers" else [f"caption {i}" for i in range(len(stored))]
    index = GalleryIndex(stored.vectors, names, modality="minilm_global").save(tmp_path / "index")
    out = tmp_path / "m.png"
    rc = main(["retrieve", "search", str(index), "--samples", "0", "--world", str(d / "world"), "--k", "2",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    best = "caption 0" if names else "0"
    assert captured.out.startswith(f"#0: #{best} 1.000") and Image.open(out).size[0] > 0


def test_query_draws_caption_keys_as_text_even_with_a_world_folder(files, tmp_path, capsys):
    d, bundle = files
    index = GalleryIndex(torch.randn(6, 12), [f"caption {i}" for i in range(6)], modality="auditvec_global",
                         source=str(d / "world")).save(tmp_path / "index")
    rc = main(["retrieve", "--model", str(bundle), "--index", str(index), "--from", f"rgb={d / 'scene.png'}",
               "--k", "2", "--out", str(tmp_path / "q.png")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err  # was: "invalid literal for int() with base 10: 'caption ...'"
    assert re.match(r"query 0 \(tok_auditvec_global\): #caption \d \S+  #caption \d", captured.out), captured.out


@pytest.mark.parametrize("into", ["world", "bundle"])
def test_build_refuses_an_out_folder_that_is_not_an_index(files, capsys, into):
    """`retrieve build W --out W` replaced the world's README.md with the index's (and a model folder's config.json
    would have gone the same way); an index folder is still rewritten in place."""
    d, bundle = files
    folder = d / "world" if into == "world" else bundle
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    err = _run(["retrieve", "build", str(d / "world"), "--out", str(folder)], capsys)
    assert err == (f"polymodal retrieve build: --out {folder} holds other files (it is not a gallery index folder): "
                   "choose a new or empty folder\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert main(["retrieve", "build", str(d / "world"), "--out", str(d / "world_index")]) == 0  # an index: rewritten
