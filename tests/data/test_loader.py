"""The streaming token loader: exact split over ranks and workers, mixture proportions, resume, bad shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.config import MaskingConfig
from polymodal.data.loader import TokenLoader
from polymodal.data.sources import TextSource, TokenSource
from polymodal.data.world.store import ShardError

from .helpers import CAPTION, GRID, OTHER, index_dataset, sample_ids

MASK = MaskingConfig(num_input_tokens=12, num_target_tokens=12)
MODS = {GRID.name: GRID, CAPTION.name: CAPTION}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    index_dataset(root / "eight", 400, shard_size=50)  # 8 shards: whole shards per reader
    index_dataset(root / "two", 200, shard_size=100)  # 2 shards, 4 readers: every reader strides every shard
    return root


@pytest.mark.parametrize("name, n, batch", [("eight", 400, 25), ("two", 200, 10)])
def test_two_ranks_two_workers_read_every_sample_once_per_pass(data, name, n, batch):
    src = TokenSource(data / name)
    per_slot = [src.pass_count(0, s, 4) for s in range(4)]
    assert sum(per_slot) == n and len(set(per_slot)) == 1 and per_slot[0] % batch == 0
    seen = []
    for rank in range(2):
        # A worker hands out groups of mask_group samples: one group here is one pass of its slot.
        loader = TokenLoader([src], mods=MODS, masking=MASK, batch_size=batch, rank=rank, world=2, workers=2,
                             shuffle=64, mask_group=per_slot[0])
        seen += [i for b in loader.take(sum(per_slot[2 * rank:2 * rank + 2]) // batch) for i in sample_ids(b)]
        loader.close()
    assert sorted(seen) == list(range(n))


def test_passes_differ_in_order_and_crop(data):
    src = TokenSource(data / "two")
    stream = src.stream(0, 0, 1, shuffle=32)
    first = [next(stream) for _ in range(200)]
    second = [next(stream) for _ in range(200)]
    assert sorted(s["__key__"] for s in first) == sorted(s["__key__"] for s in second)
    assert [s["__key__"] for s in first] != [s["__key__"] for s in second]
    crops = {int(s["tok_a@data"][2] >= 200) for s in first}
    assert crops == {0, 1}


def test_mixture_proportions_and_missing_modalities(tmp_path):
    index_dataset(tmp_path / "a", 300, shard_size=100, names=("tok_a@data", "caption"))
    index_dataset(tmp_path / "b", 300, shard_size=100, names=("caption", "tok_b@data"), start=1000)
    mods = {GRID.name: GRID, CAPTION.name: CAPTION, OTHER.name: OTHER}
    loader = TokenLoader([TokenSource(tmp_path / "a"), TokenSource(tmp_path / "b")], weights=[3, 1], mods=mods,
                         masking=MASK, batch_size=64)
    batches = loader.take(40)
    from_a = torch.cat([b[GRID.name].values[:, 0] > 0 for b in batches]).double()
    share, sigma = float(from_a.mean()), (0.75 * 0.25 / from_a.numel()) ** 0.5
    assert abs(share - 0.75) < 4 * sigma
    for b in batches:  # a sample without a modality gets no tokens of it
        absent = b[GRID.name].values[:, 0] == 0
        assert not (b[GRID.name].is_input | b[GRID.name].is_target)[absent].any()
        assert not (b[OTHER.name].is_input | b[OTHER.name].is_target)[~absent].any()
        assert (b[CAPTION.name].is_input.any(1) | b[CAPTION.name].is_target.any(1)).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_a_recorded_position_gives_the_same_next_batches(data, workers):
    kw = dict(mods=MODS, masking=MASK, batch_size=16, workers=workers, shuffle=32)
    src = TokenSource(data / "eight")
    whole = TokenLoader([src], **kw).take(33)  # past a pass (400 samples = 25 batches)
    for pos in (5, 26):
        resumed = TokenLoader([src], position=pos, **kw)
        for a, b in zip(resumed.take(3), whole[pos:pos + 3]):
            for name in MODS:
                assert torch.equal(a[name].values, b[name].values)
                assert torch.equal(a[name].is_input, b[name].is_input)
                assert torch.equal(a[name].is_target, b[name].is_target)
        assert resumed.state_dict()["batches"] == pos + 3


def test_workers_zero_and_one_give_the_same_batches(data):
    kw = dict(mods=MODS, masking=MASK, batch_size=16, shuffle=32)
    a = TokenLoader([TokenSource(data / "eight")], workers=0, **kw).take(3)
    b = TokenLoader([TokenSource(data / "eight")], workers=1, **kw).take(3)
    assert all(torch.equal(x[GRID.name].is_input, y[GRID.name].is_input) for x, y in zip(a, b))


def test_text_only_source_becomes_captions(tmp_path):
    from polymodal.tokenizers.text import train_text_tokenizer

    corpus = tmp_path / "text.txt"
    corpus.write_text("\n".join(f"a red cube number {i} beside a blue sphere" for i in range(40)) + "\n\n")
    tok = train_text_tokenizer([corpus], vocab_size=4400, show_progress=False)
    tok.save_pretrained(tmp_path / "tok")
    src = TextSource(corpus, tmp_path / "tok")
    assert len(src) == 40
    batch = TokenLoader([src], mods={CAPTION.name: CAPTION}, masking=MASK, batch_size=8).take(1)[0]
    text = tok.decode(batch[CAPTION.name].values)
    assert batch[CAPTION.name].is_input.any(1).all() and all(isinstance(t, str) for t in text)


def test_truncated_shard_names_the_shard_or_is_skipped(tmp_path):
    index_dataset(tmp_path / "d", 40, shard_size=10)
    bad = tmp_path / "d" / "tokens-000002.tar"
    bad.write_bytes(bad.read_bytes()[:3000])
    with pytest.raises(ShardError, match="tokens-000002.tar"):
        TokenLoader([TokenSource(tmp_path / "d")], mods=MODS, masking=MASK, batch_size=10).take(4)
    src = TokenSource(tmp_path / "d", on_bad_shard="skip")
    with pytest.warns(UserWarning, match="tokens-000002.tar"):
        ids = [i for b in TokenLoader([src], mods=MODS, masking=MASK, batch_size=10, shuffle=1).take(3)
               for i in sample_ids(b)]
    assert sorted(ids) == sorted(set(range(40)) - set(range(20, 30)))
    assert len(src.bad_shards) == 1 and "tokens-000002.tar" in src.bad_shards[0]
    np.testing.assert_equal(len(src), 40)


def test_a_source_without_any_of_the_modalities_is_refused(data):
    with pytest.raises(ValueError, match="none of the loader's modalities"):
        TokenLoader([TokenSource(data / "two")], mods={OTHER.name: OTHER}, masking=MASK, batch_size=4)
