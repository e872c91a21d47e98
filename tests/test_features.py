"""`FourM.encode_features`: shapes and masks against the batch's own input masks, pooled = the mean of the valid
tokens computed here, each sample's features independent of the batch it is in, and parity with `FourM.encode`."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import Batch, ModalityTokens
from polymodal.model import FourM
from tests.conftest import TINY_MODS, random_batch, single_thread, tiny_config

one_thread = pytest.fixture(autouse=True)(single_thread)


@pytest.fixture(scope="module")
def model() -> FourM:
    torch.manual_seed(0)
    return FourM(tiny_config()).eval()


def test_shapes_masks_modalities_and_positions(model):
    batch = random_batch(4, seed=1)
    with torch.no_grad():
        f = model.encode_features(batch)
    counts = sum(batch[m.name].is_input.sum(dim=1) for m in TINY_MODS)  # (B,) input tokens per sample
    assert f.tokens.shape == (4, int(counts.max()), model.config.dim)
    assert f.valid.sum(dim=1).tolist() == counts.tolist()
    assert f.names == tuple(m.name for m in TINY_MODS)  # domains_in order, every one has inputs
    for b in range(4):
        n = int(counts[b])
        assert f.valid[b, :n].all() and not f.valid[b, n:].any()  # tokens first, padding after
        assert (f.modality[b, n:] == -1).all() and (f.tokens[b, n:] == 0).all()
        # modality by modality in domains_in order, each at its input positions in ascending order
        expected_mod = torch.cat([torch.full((int(batch[m.name].is_input[b].sum()),), i)
                                  for i, m in enumerate(TINY_MODS)])
        expected_pos = torch.cat([batch[m.name].is_input[b].nonzero()[:, 0] for m in TINY_MODS])
        assert f.modality[b, :n].tolist() == expected_mod.tolist()
        assert f.positions[b, :n].tolist() == expected_pos.tolist()
    assert torch.isfinite(f.tokens).all()


def test_pooled_is_the_mean_of_valid_tokens(model):
    batch = random_batch(3, seed=2)
    with torch.no_grad():
        f = model.encode_features(batch)
    for b in range(3):
        rows = [f.tokens[b, j] for j in range(f.tokens.shape[1]) if bool(f.valid[b, j])]
        torch.testing.assert_close(f.pooled[b], sum(rows) / len(rows))
        for i, name in enumerate(f.names):
            mine = [f.tokens[b, j] for j in range(f.tokens.shape[1]) if int(f.modality[b, j]) == i]
            torch.testing.assert_close(f.modality_mean(name)[b], sum(mine) / len(mine))


def test_a_sample_alone_has_the_features_it_has_in_a_batch(model):
    """Padding is masked as keys: sample b's features do not depend on the longer samples beside it."""
    batch = random_batch(3, seed=3)
    with torch.no_grad():
        f = model.encode_features(batch)
        for b in range(3):
            one = Batch({n: ModalityTokens(t.values[b:b + 1], t.is_input[b:b + 1], t.is_target[b:b + 1])
                         for n, t in batch.items()})
            g = model.encode_features(one)
            n = int(g.valid.sum())
            torch.testing.assert_close(g.tokens[0, :n], f.tokens[b, :n], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(g.pooled[0], f.pooled[b], atol=1e-5, rtol=1e-5)


def test_features_are_the_encoder_output_before_the_decoder_projection(model):
    """`encode`'s context is decoder_proj_context(features) + position/modality embeddings, token for token."""
    batch = random_batch(2, seed=4)
    full = Batch({n: t.with_masks(is_input=torch.ones_like(t.is_input), is_target=torch.zeros_like(t.is_target))
                  for n, t in batch.items() if n != "seq@test"})  # every position an input: no padding
    with torch.no_grad():
        f = model.encode_features(full)
        enc = model.encode(full)
        emb = torch.cat([p.emb for p in model.embed_inputs(full).values()], dim=1)
        torch.testing.assert_close(enc.context, model.decoder_proj_context(f.tokens) + emb, atol=1e-5, rtol=1e-5)


def test_targets_are_ignored(model):
    batch = random_batch(2, seed=5)
    no_targets = Batch({n: t.with_masks(is_target=torch.zeros_like(t.is_target)) for n, t in batch.items()})
    with torch.no_grad():
        torch.testing.assert_close(model.encode_features(batch).tokens, model.encode_features(no_targets).tokens)


def test_a_modality_absent_from_a_sample(model):
    batch = random_batch(2, seed=6)
    t = batch["tok_a@test"]
    is_in = t.is_input.clone()
    is_in[1] = False  # sample 1 has no tok_a token
    f = model.encode_features(batch.replace(**{"tok_a@test": t.with_masks(is_input=is_in, is_target=t.is_target
                                                                           & ~is_in)}))
    assert f.has("tok_a@test").tolist() == [True, False]
    assert (f.modality_mean("tok_a@test")[1] == 0).all()
    with pytest.raises(KeyError, match="no tokens of modality 'rgb@other'"):
        f.modality_mean("rgb@other")


def test_no_input_is_refused_in_one_line(model):
    batch = random_batch(2, seed=7)
    none = Batch({n: t.with_masks(is_input=torch.zeros_like(t.is_input)) for n, t in batch.items()})
    with pytest.raises(ValueError, match=r"^no input tokens: give at least one input modality \(inputs of this "
                                         r"model: rgb@test, "):
        model.encode_features(none)
    one_empty = Batch({n: t.with_masks(is_input=t.is_input & torch.tensor([[True], [False]]))
                       for n, t in batch.items()})
    with pytest.raises(ValueError, match="^sample 1 has no input token; every sample needs at least one to encode$"):
        model.encode_features(one_empty)
