"""The entry points generation calls (`FourM.encode` with passes, `sequence_queries` + `run_decoder` with a cache,
`head`/`logits`) against the training forward as oracle, and the one set of `ModelConfig` defaults."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.data.batch import Batch, ModalityTokens, collate
from polymodal.model import FourM

from .conftest import TINY_IN, TINY_OUT, random_batch, single_thread, tiny_config

one_thread = pytest.fixture(autouse=True)(single_thread)
SEQ, TOK = "seq@test", "tok_a@test"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FourM(tiny_config(qk_norm=True)).eval()


def _caption_batch(b: int = 2, length: int = 9) -> Batch:
    """RGB as input; every token of the sequence a target (teacher forcing feeds ids[:-1], predicts ids[1:])."""
    g = torch.Generator().manual_seed(5)
    rgb = torch.rand(b, 3, 16, 16, generator=g)
    ids = torch.randint(5, 40, (b, length), generator=g)
    every = torch.ones(b, length, dtype=torch.bool)
    return Batch({"rgb@test": ModalityTokens.full_input(rgb, 16),
                  SEQ: ModalityTokens(ids, torch.zeros_like(every), every)})


def test_cached_decoding_gives_the_teacher_forced_states(model):
    batch = _caption_batch()
    ids = batch[SEQ].values
    with torch.no_grad():
        enc = model.encode(batch)
        forced = model.decode(batch, enc, [SEQ], logits=False)[SEQ]
        cache = model.new_cache(enc, capacity=ids.shape[1] - 1)
        steps = []
        for t in range(ids.shape[1] - 1):
            x = model.sequence_queries(SEQ, ids[:, t:t + 1], torch.full((2, 1), t))
            steps.append(model.run_decoder(x, enc, cache=cache)[:, 0])
    states = torch.stack(steps, dim=1).reshape(-1, model.config.dim)  # (sample, row) order, as forced.hidden
    assert torch.allclose(states, forced.hidden, atol=1e-5)
    assert torch.equal(model.logits(SEQ, states).argmax(-1), model.logits(SEQ, forced.hidden).argmax(-1))


def test_head_and_logits_are_the_forward_projection(model):
    batch = random_batch(3, seed=7)
    with torch.no_grad():
        full, hidden = model(batch), model(batch, logits=False)
    for name in TINY_OUT:
        assert model.head(name) is model.decoder_embeddings[name].to_logits
        # the head weight itself, through a view (an autograd node DDP's graph walk can follow to the parameter)
        head = hidden[name].head
        assert head._base is model.head(name).weight and torch.equal(head, model.head(name).weight)
        assert torch.allclose(model.logits(name, hidden[name].hidden), full[name].logits, atol=1e-6)


def test_encoding_passes_together_equals_encoding_each_alone(model):
    cond = _caption_batch(b=2)
    uncond = cond.replace(**{"rgb@test": cond["rgb@test"].with_masks(is_input=torch.zeros(2, 16, dtype=torch.bool))})
    uncond = uncond.replace(**{SEQ: ModalityTokens(cond[SEQ].values[:, :3], torch.ones(2, 3, dtype=torch.bool),
                                                   torch.zeros(2, 3, dtype=torch.bool))})
    with torch.no_grad():
        both = model.encode(collate([cond, uncond]), passes=2)
        alone = [model.encode(cond), model.encode(uncond)]
    for p, one in enumerate(alone):
        ctx, valid = both.context[2 * p:2 * p + 2], both.valid[2 * p:2 * p + 2]
        assert torch.equal(valid.sum(1), one.valid.sum(1))
        assert torch.allclose(ctx[valid], one.context[one.valid], atol=1e-5)


def test_a_sample_without_inputs_reads_an_empty_context(model):
    """In a batch, a sample with no input token decodes as it does alone (where the whole context is empty):
    its cross-attention reads nothing, whatever the padding of the other samples holds."""
    batch = _caption_batch(b=2)
    rgb = batch["rgb@test"]
    no_input = rgb.is_input.clone()
    no_input[1] = False
    mixed = batch.replace(**{"rgb@test": rgb.with_masks(is_input=no_input)})
    alone = Batch({k: ModalityTokens(v.values[1:], v.is_input[1:], v.is_target[1:]) for k, v in mixed.items()})
    with torch.no_grad():
        enc = model.encode(alone)
        assert not enc.valid.any()
        a = model.decode(mixed, model.encode(mixed), [SEQ])[SEQ].dense()[1]
        b = model.decode(alone, enc, [SEQ])[SEQ].dense()[0]
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


def test_model_config_has_one_set_of_defaults():
    """ModelConfig's defaults are the preset's: 4M-21's layer choices (its released configs: act_layer SiLU,
    gated_mlp, no qkv/proj/mlp/norm biases) at size B (dim 768, 12 + 12 layers, 12 heads)."""
    domains = dict(domains_in=TINY_IN, domains_out=TINY_OUT)
    plain = ModelConfig(**domains)
    assert plain == ModelConfig.preset("B", **domains)
    assert (plain.dim, plain.encoder_depth, plain.decoder_depth, plain.num_heads) == (768, 12, 12, 12)
    assert (plain.act, plain.gated_mlp) == ("silu", True)
    assert not any((plain.qkv_bias, plain.proj_bias, plain.mlp_bias, plain.norm_bias, plain.qk_norm))
    small = ModelConfig.preset("test", **domains)
    assert small == dataclasses.replace(plain, dim=64, encoder_depth=2, decoder_depth=2, num_heads=4)
    assert ModelConfig.preset("test", act="gelu", **domains).act == "gelu"  # overrides still win
