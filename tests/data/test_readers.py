"""Readers: shard patterns (folders, globs, braces), the folder-per-modality layout, truncated shards."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from polymodal.data.pretokenize import pretokenize
from polymodal.data.readers import FolderDataset, expand_braces, iter_shards, read_dataset, shard_paths
from polymodal.data.world import ShardError, synthesize


def test_brace_patterns():
    assert expand_braces("s-{0008..0011}.tar") == ["s-0008.tar", "s-0009.tar", "s-0010.tar", "s-0011.tar"]
    assert expand_braces("{a,b}/x-{1..2}.tar") == ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    synthesize(out, 12, 32, 0, 1, shard_size=4)
    return out


def test_folder_glob_and_braces_name_the_same_shards(world):
    by_folder = shard_paths(world)
    assert [p.name for p in by_folder] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert shard_paths(str(world / "shard-*.tar")) == by_folder
    assert shard_paths(str(world / "shard-{000000..000002}.tar")) == by_folder
    samples = list(iter_shards(str(world / "shard-{000001..000002}.tar"), fields=["rgb", "depth", "det"]))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(4, 12)]
    assert samples[0]["depth"].dtype == np.float32 and samples[0]["rgb"].shape == (32, 32, 3)
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        shard_paths(str(world / "nothing-*.tar"))


def test_truncated_shard_error_names_it(world, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes((world / "shard-000001.tar").read_bytes()[:5000])
    with pytest.raises(ShardError, match="bad.tar"):
        list(iter_shards(bad))


def test_folder_layout_with_missing_modalities(world, tmp_path):
    root = tmp_path / "tree"
    for m in ("rgb", "depth", "caption"):
        (root / m).mkdir(parents=True)
    for i, s in enumerate(iter_shards(world, fields=["rgb", "depth", "caption"])):
        cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), s["rgb"][..., ::-1])
        if i % 2 == 0:  # half the samples have no depth
            cv2.imwrite(str(root / "depth" / f"{i:04d}.png"), (s["depth"] * 1000).astype(np.uint16))
        (root / "caption" / f"{i:04d}.txt").write_text(s["caption"])
    ds = FolderDataset(root)
    assert len(ds) == 12 and ds.keys[0] == "0000"
    assert set(ds[0]) == {"__key__", "rgb", "depth", "caption"} and "depth" not in ds[1]
    assert ds[0]["depth"].dtype == np.float32  # the world codec's units: metres
    assert len(list(read_dataset(root))) == 12


def test_pretokenize_a_folder_layout(world, tmp_path):
    import torch

    from polymodal.tokenizers import ViTVQVAE
    from polymodal.tokenizers.vqvae import VQVAEConfig

    root = tmp_path / "tree"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i, s in enumerate(iter_shards(world, fields=["rgb", "depth"])):
        cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), s["rgb"][..., ::-1])
        if i % 3:
            cv2.imwrite(str(root / "depth" / f"{i:04d}.png"), (s["depth"] * 1000).astype(np.uint16))
    torch.manual_seed(0)
    tiny = dict(image_size=32, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1, codebook_size=32)
    ViTVQVAE(VQVAEConfig(values="rgb", name="tok_rgb@rd32", **tiny)).save_pretrained(tmp_path / "t_rgb")
    ViTVQVAE(VQVAEConfig(values="depth", name="tok_depth@rd32", **tiny)).save_pretrained(tmp_path / "t_depth")
    info = pretokenize(str(root), {"rgb": str(tmp_path / "t_rgb"), "depth": str(tmp_path / "t_depth")},
                       tmp_path / "tok", crops=2, shard_size=5, workers=2)
    assert info["counts"] == [5, 5, 2] and json.loads((tmp_path / "tok" / "tokens.json").read_text())["complete"]
    from polymodal.data.sources import read_token_shard

    first = read_token_shard(tmp_path / "tok" / "tokens-000000.tar")
    assert "tok_depth@rd32" not in first[0] and first[1]["tok_depth@rd32"].shape == (2, 16)
    # a killed run: one shard missing, a temporary file left; the rerun rewrites that shard only
    kept = (tmp_path / "tok" / "tokens-000000.tar").stat().st_mtime_ns
    (tmp_path / "tok" / "tokens-000001.tar").unlink()
    (tmp_path / "tok" / "tokens-000002.tar.tmp-123").write_bytes(b"partial")
    again = pretokenize(str(root), {"rgb": str(tmp_path / "t_rgb"), "depth": str(tmp_path / "t_depth")},
                        tmp_path / "tok", crops=2, shard_size=5)
    assert again["counts"] == [5, 5, 2] and not list((tmp_path / "tok").glob("*.tmp-*"))
    assert (tmp_path / "tok" / "tokens-000000.tar").stat().st_mtime_ns == kept
    assert read_token_shard(tmp_path / "tok" / "tokens-000001.tar")[0]["__key__"] == "0005"
