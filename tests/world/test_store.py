"""Shards: round trips, identical bytes, resuming after kills and truncation, clear errors, the CLI."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest

from polymodal.cli import main
from polymodal.data.world import ShardError, iter_samples, read_sample, read_shard, render_sample, synthesize
from polymodal.data.world.codec import decode, encode, quantize
from polymodal.data.world.sample import IMAGE_KEYS, MODALITIES
from polymodal.data.world.store import check_shard, entry_names

RES, N, SHARD = 32, 7, 3  # three shards: 3 + 3 + 1 samples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    synthesize(out, N, RES, seed=4, workers=1, shard_size=SHARD)
    return out


def _bytes(path):
    return {p.name: p.read_bytes() for p in sorted(path.glob("shard-*.tar"))}


def test_shards_round_trip(dataset):
    samples = list(iter_samples(dataset))
    assert [s["__key__"] for s in samples] == list(range(N))
    for s in samples:
        ref = render_sample(4, s["__key__"], RES)
        for key in MODALITIES:
            if key in IMAGE_KEYS:
                assert s[key].dtype == ref[key].dtype and s[key].shape == ref[key].shape, key
                assert np.array_equal(s[key], quantize(key, ref[key])), key
            else:
                assert s[key] == ref[key], key
    # Quantization is documented and small: millimetres, 1/32767 of a normal component.
    ref = render_sample(4, 0, RES)
    assert np.abs(samples[0]["depth"] - ref["depth"]).max() <= 0.0005 + 1e-6
    assert np.abs(samples[0]["normal"] - ref["normal"]).max() <= 1 / 65535 + 1e-6
    # A second trip changes nothing: the stored form is a fixed point.
    for key in IMAGE_KEYS:
        assert encode(key, decode(key, encode(key, ref[key]))) == encode(key, ref[key])


def test_random_access_reads_the_same_sample(dataset):
    streamed = list(iter_samples(dataset, modalities=["rgb", "det"]))
    for i in (0, 4, N - 1):
        one = read_sample(dataset, i, modalities=["rgb", "det"])
        assert np.array_equal(one["rgb"], streamed[i]["rgb"]) and one["det"] == streamed[i]["det"]
    with pytest.raises(IndexError, match="out of range"):
        read_sample(dataset, N)


def test_dataset_json_describes_the_shards(dataset):
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["complete"] and info["count"] == N and info["resolution"] == RES and info["seed"] == 4
    assert info["shards"] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert set(info["modalities"]) == set(MODALITIES) and info["semseg_classes"][:3] == ["sky", "wall", "floor"]
    assert "millimetres" in (dataset / "README.md").read_text()


def test_same_arguments_same_bytes_whatever_the_workers(dataset, tmp_path):
    synthesize(tmp_path, N, RES, seed=4, workers=2, shard_size=SHARD)
    assert _bytes(tmp_path) == _bytes(dataset)


def test_webdataset_reads_the_shards(dataset):
    wds = pytest.importorskip("webdataset")
    rows = list(wds.WebDataset(str(dataset / "shard-000000.tar"), shardshuffle=False))
    assert [r["__key__"] for r in rows] == ["00000000", "00000001", "00000002"]
    assert {"rgb.png", "depth.png", "det.json", "caption.txt"} <= set(rows[0])


def test_truncated_shard_is_named_detected_and_rewritten(dataset, tmp_path):
    synthesize(tmp_path, N, RES, seed=4, workers=1, shard_size=SHARD)
    good = _bytes(tmp_path)
    victim = tmp_path / "shard-000001.tar"
    victim.write_bytes(good[victim.name][: len(good[victim.name]) // 2])
    keep = tmp_path / "shard-000000.tar"
    stamp = keep.stat().st_mtime_ns
    with pytest.raises(ShardError, match="shard-000001.tar"):
        list(iter_samples(tmp_path))
    assert check_shard(victim, entry_names(3, 6)) is not None
    # Cut inside the last entry's data: all names are there, the data is not.
    with tarfile.open(fileobj=io.BytesIO(good[victim.name])) as tar:
        last = tar.getmembers()[-1]
    victim.write_bytes(good[victim.name][: last.offset_data + last.size // 2])
    assert check_shard(victim, entry_names(3, 6)) is not None
    with pytest.raises(ShardError, match="shard-000001.tar"):
        list(read_shard(victim))
    synthesize(tmp_path, N, RES, seed=4, workers=1, shard_size=SHARD)
    assert _bytes(tmp_path) == good
    assert keep.stat().st_mtime_ns == stamp, "a complete shard was rewritten"


def test_resume_after_a_kill(tmp_path):
    """A killed run leaves temporary files and missing shards; the rerun cleans and finishes."""
    synthesize(tmp_path, N, RES, seed=4, workers=1, shard_size=SHARD)
    good = _bytes(tmp_path)
    (tmp_path / "shard-000002.tar").unlink()
    (tmp_path / "shard-000002.tar.tmp-12345").write_bytes(b"half a tar")
    info = json.loads((tmp_path / "dataset.json").read_text())
    (tmp_path / "dataset.json").write_text(json.dumps({**info, "complete": False}))
    synthesize(tmp_path, N, RES, seed=4, workers=1, shard_size=SHARD)
    assert _bytes(tmp_path) == good
    assert not list(tmp_path.glob("*.tmp-*"))
    assert json.loads((tmp_path / "dataset.json").read_text())["complete"]


def test_growing_a_dataset_keeps_its_shards(tmp_path):
    synthesize(tmp_path, 4, RES, seed=1, shard_size=SHARD)
    first = (tmp_path / "shard-000000.tar").stat().st_mtime_ns
    synthesize(tmp_path, 6, RES, seed=1, shard_size=SHARD)
    assert (tmp_path / "shard-000000.tar").stat().st_mtime_ns == first
    assert [s["__key__"] for s in iter_samples(tmp_path, modalities=["caption"])] == list(range(6))


def test_bad_arguments_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        synthesize(tmp_path / "a", 2, 16)
    with pytest.raises(ValueError, match="n must be"):
        synthesize(tmp_path / "b", 0, 32)
    with pytest.raises(ValueError, match="workers"):
        synthesize(tmp_path / "c", 2, 32, workers=0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write the dataset to .*file"):
        synthesize(blocker / "sub", 2, 32)
    with pytest.raises(OSError, match="it is a file"):
        synthesize(blocker, 2, 32)
    synthesize(tmp_path / "d", 2, 32, seed=1)
    with pytest.raises(ValueError, match="different world dataset.*seed"):
        synthesize(tmp_path / "d", 2, 32, seed=2)
    with pytest.raises(FileNotFoundError, match="not a world dataset"):
        list(iter_samples(tmp_path))


def test_cli_synth_and_show(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["data", "synth", "--out", str(out), "--n", "3", "--res", "32", "--shard-size", "2"]) == 0
    assert main(["data", "show", str(out), "--n", "2", "--out", str(tmp_path / "g.png")]) == 0
    from PIL import Image

    img = Image.open(tmp_path / "g.png")
    assert img.width > 10 * 128 and img.height > 2 * 128
    assert "3 samples" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "3", "--res", "8"]) == 2
    assert "resolution" in capsys.readouterr().err
    assert main(["data", "show", str(tmp_path)]) == 2
    assert "not a world dataset" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x" / "shard-000000.tar")
