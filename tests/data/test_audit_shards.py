"""Damaged datasets found by a user's audit: a shard whose middle is overwritten, a sample without the modality a
tokenizer reads, a token shard that breaks inside a loader worker. Each must stop with one line naming the shard."""

from __future__ import annotations

import tarfile

import pytest

from polymodal.cli import load_recipe
from polymodal.config import MaskingConfig, apply_overrides
from polymodal.data.indexed import ModalityStore
from polymodal.data.loader import TokenLoader
from polymodal.data.readers import iter_shards
from polymodal.data.shards import add_member, atomic_tar
from polymodal.data.sources import TokenSource
from polymodal.data.world import ShardError, iter_samples, synthesize

from ..train.helpers import ROOT
from .helpers import CAPTION, GRID, index_dataset

MODS = {GRID.name: GRID, CAPTION.name: CAPTION}
GRID_MASK = MaskingConfig(num_input_tokens=12, num_target_tokens=12)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    synthesize(out, 8, 32, 0, 1, shard_size=4)
    return out


def _garble_header(path, member: int) -> None:
    """Overwrite the tar header of entry ``member``: tarfile then ends the archive there without a word."""
    with tarfile.open(path) as tar:
        offset = tar.getmembers()[member].offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 512)


def test_a_garbled_entry_header_is_a_corrupt_shard_not_a_shorter_one(world, tmp_path):
    bad = tmp_path / "world"
    bad.mkdir()
    for f in world.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    _garble_header(bad / "shard-000001.tar", 20)  # sample 5's entries: samples 5-7 were silently dropped
    with pytest.raises(ShardError, match=r"shard .*shard-000001\.tar is truncated or corrupt \(.*byte \d+"):
        list(iter_shards(bad))
    with pytest.raises(ShardError, match=r"shard-000001\.tar is truncated or corrupt"):
        list(iter_samples(bad, modalities=["rgb"]))
    assert len(list(iter_shards(world))) == 8  # an intact dataset still reads whole


def test_a_sample_without_the_tokenizers_modality_names_shard_sample_and_modality(world, tmp_path):
    bad = tmp_path / "world"
    bad.mkdir()
    for f in world.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    with tarfile.open(world / "shard-000001.tar") as src, atomic_tar(bad / "shard-000001.tar") as dst:
        for m in src.getmembers():
            if m.name != "00000005.rgb.png":
                add_member(dst, m.name, src.extractfile(m).read())
    cfg = apply_overrides(load_recipe(str(ROOT / "configs" / "tokenizer_rgb_world64.py")),
                          [f"data.path={bad}", "data.val_samples=2"])
    store = ModalityStore(cfg, "rgb", 32)
    assert store.get(4).shape == (32, 32, 3)
    with pytest.raises(ShardError, match=r"^shard .*shard-000001\.tar: sample 5 has no 'rgb' entry"):
        store.get(5)


def test_a_bad_token_shard_read_by_a_loader_worker_is_one_line(tmp_path):
    index_dataset(tmp_path / "d", 40, shard_size=10)
    _garble_header(tmp_path / "d" / "tokens-000001.tar", 2)
    loader = TokenLoader([TokenSource(tmp_path / "d")], mods=MODS, masking=GRID_MASK, batch_size=10, workers=1,
                         shuffle=1)
    with pytest.raises(ShardError) as e:
        loader.take(4)
    loader.close()
    # torch wraps a worker's error as "Caught ShardError in DataLoader worker process 0.\nOriginal Traceback ...".
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("shard ") and "tokens-000001.tar is truncated or corrupt (bad header" in str(e.value)


def test_a_dataset_whose_writing_was_stopped_is_refused_for_training_naming_the_fix(world, tmp_path):
    import json

    from polymodal.config import ConfigError
    from polymodal.data.world import read_shard

    bad = tmp_path / "world"
    bad.mkdir()
    for f in world.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "shard-000001.tar").unlink()  # a killed `polymodal data synth`: the last shard never written
    info = json.loads((bad / "dataset.json").read_text())
    (bad / "dataset.json").write_text(json.dumps({**info, "complete": False}))
    cfg = apply_overrides(load_recipe(str(ROOT / "configs" / "tokenizer_rgb_world64.py")),
                          [f"data.path={bad}", "data.val_samples=2"])
    with pytest.raises(ConfigError, match=r"^data.path: .*world is not complete \(`polymodal data synth` was "
                                          r"stopped\); rerun it with the same arguments to finish it$"):
        ModalityStore(cfg, "rgb", 32)
    with pytest.raises(ShardError, match=r"^shard .*shard-000001\.tar is missing; rerun `polymodal data synth`"):
        list(read_shard(bad / "shard-000001.tar"))
