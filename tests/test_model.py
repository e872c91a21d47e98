"""The 4M model on the test-size config: shapes, gradients, invariances, a loss that falls, clear errors."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import ModalityTokens
from polymodal.modalities import Kind
from polymodal.model import FourM, masked_modeling_loss

from .conftest import TINY_MODS, TINY_OUT, random_batch, tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FourM(tiny_config()).eval()


def test_output_shapes_for_every_kind(model):
    batch = random_batch(3)
    out = model(batch)
    assert set(out) == set(TINY_OUT)
    for name, o in out.items():
        mod = model.config.modality(name)
        tokens = batch[name]
        b, t, v = o.dense().shape
        assert o.logits.shape == (int(o.valid.sum()), v)
        assert (b, v) == (3, mod.vocab_size)
        if mod.kind is Kind.IMAGE_TOKENS:
            # one row per target position, in ascending order
            assert torch.equal(o.valid.sum(1), tokens.is_target.sum(1))
            for i in range(b):
                pos = o.positions[i][o.valid[i]]
                assert torch.equal(pos, tokens.is_target[i].nonzero().flatten())
                assert torch.equal(o.targets[i][o.valid[i]], tokens.values[i, pos])
        else:
            # teacher forcing: one query fewer than target tokens, each predicts the next id
            assert torch.equal(o.valid.sum(1), tokens.is_target.sum(1) - 1)
            for i in range(b):
                tgt = tokens.values[i][tokens.is_target[i]]
                assert torch.equal(o.targets[i][o.valid[i]], tgt[1:])


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = FourM(tiny_config(qk_norm=True, share_modality_embeddings=True))
    loss, _ = masked_modeling_loss(model(random_batch(4, all_targets=True)))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"


def test_decoding_one_modality_alone_gives_the_same_logits(model):
    """Decoder self-attention stays inside each modality: other targets do not change a modality's logits."""
    batch = random_batch(3, seed=1)
    with torch.no_grad():
        together = model(batch)
        enc = model.encode(batch)
        for name in TINY_OUT:
            alone = model.decode(batch, enc, domains=[name])[name]
            v = alone.valid
            assert torch.allclose(alone.dense()[v], together[name].dense()[v], atol=1e-5), name


def test_sequence_decoding_is_causal(model):
    """Changing a later target token leaves the logits of earlier queries unchanged."""
    batch = random_batch(2, seed=2)
    seq = batch["seq@test"]
    last = seq.is_target.long().cumsum(1).argmax(1)  # last target position per sample
    values = seq.values.clone()
    values[torch.arange(2), last - 1] = (values[torch.arange(2), last - 1] + 1) % 40
    changed = batch.replace(**{"seq@test": ModalityTokens(values, seq.is_input, seq.is_target)})
    with torch.no_grad():
        a, b = model(batch)["seq@test"], model(changed)["seq@test"]
    for i in range(2):
        n = int(a.valid[i].sum())
        da, db = a.dense(), b.dense()
        assert torch.allclose(da[i, : n - 1], db[i, : n - 1], atol=1e-5)
        assert not torch.allclose(da[i, n - 1], db[i, n - 1])


def test_outputs_do_not_depend_on_the_rest_of_the_batch(model):
    """Padding (other samples with more tokens) is masked everywhere."""
    batch = random_batch(4, seed=3)
    single = type(batch)({k: ModalityTokens(v.values[:1], v.is_input[:1], v.is_target[:1]) for k, v in batch.items()})
    with torch.no_grad():
        full, one = model(batch), model(single)
    for name in TINY_OUT:
        v = one[name].valid[0]
        t = int(v.sum())
        assert torch.allclose(full[name].dense()[0, :t], one[name].dense()[0, :t], atol=1e-5), name


def test_same_input_same_output_and_masked_tokens_are_ignored(model):
    batch = random_batch(2, seed=4)
    tok = batch["tok_a@test"]
    # Changing the value at a position that is neither input nor target changes nothing.
    unused = ~(tok.is_input | tok.is_target)
    values = torch.where(unused, (tok.values + 7) % 50, tok.values)
    other = batch.replace(**{"tok_a@test": ModalityTokens(values, tok.is_input, tok.is_target)})
    with torch.no_grad():
        a, b = model(batch), model(other)
    for name in TINY_OUT:
        assert torch.equal(a[name].logits, b[name].logits)


def test_bf16_autocast_has_no_nan():
    torch.manual_seed(0)
    model = FourM(tiny_config())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(random_batch(3, all_targets=True))
        loss, per_mod = masked_modeling_loss(out)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in per_mod.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_falls_on_a_repeated_batch():
    torch.manual_seed(0)
    model = FourM(tiny_config())
    batch = random_batch(4, seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(300):
        loss, _ = masked_modeling_loss(model(batch, check=False))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.1 * first, f"loss {first:.3f} -> {loss.item():.3f}"


def test_loss_weightings():
    torch.manual_seed(0)
    out = FourM(tiny_config())(random_batch(3))
    mod_loss, per_mod = masked_modeling_loss(out, weighting="modality")
    tok_loss, _ = masked_modeling_loss(out, weighting="token")
    assert torch.allclose(mod_loss, torch.stack(list(per_mod.values())).mean())
    counts = {k: o.valid.sum() for k, o in out.items()}
    expected = sum(per_mod[k] * counts[k] for k in out) / sum(counts.values())
    assert torch.allclose(tok_loss, expected)


# ----------------------------------------------------------------------------------------------- bad input


def test_unknown_domain_is_named(model):
    batch = random_batch(2)
    extra = batch.replace(**{"depth@nowhere": batch["tok_a@test"]})
    with pytest.raises(ValueError, match="depth@nowhere"):
        model(extra)


def test_ids_out_of_vocabulary_are_named(model):
    batch = random_batch(2)
    tok = batch["tok_a@test"]
    values = tok.values.clone()
    values[0, 0] = 50  # position 0 is an input; vocabulary is 50
    with pytest.raises(ValueError, match=r"tok_a@test: token id 50 is outside the vocabulary \[0, 50\)"):
        model(batch.replace(**{"tok_a@test": ModalityTokens(values, tok.is_input, tok.is_target)}))


def test_wrong_pixel_shape_is_named(model):
    batch = random_batch(2)
    rgb = batch["rgb@test"]
    bad = ModalityTokens(rgb.values[:, :, :8], rgb.is_input, rgb.is_target)
    with pytest.raises(ValueError, match=r"rgb@test: expected pixels of shape \(B, 3, 16, 16\)"):
        model(batch.replace(**{"rgb@test": bad}))


def test_targets_on_an_input_only_modality_are_rejected(model):
    batch = random_batch(2)
    vec = batch["vec@test"]
    bad = ModalityTokens(vec.values, vec.is_input, ~vec.is_input)
    with pytest.raises(ValueError, match="vec@test"):
        model(batch.replace(**{"vec@test": bad}))


def test_tiny_modalities_cover_every_kind():
    assert {m.kind.value for m in TINY_MODS} == {"pixels", "image_tokens", "sequence", "sequence_emb"}
