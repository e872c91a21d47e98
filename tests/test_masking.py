"""The masking sampler: budgets, disjointness, span masking round trips, keep schemes, determinism, 4M-21's mixture."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal import modalities
from polymodal.config import ConfigError, MaskingConfig
from polymodal.data.batch import validate_tokens
from polymodal.data.masking import (
    FOURM21_WEIGHTS,
    build_mixture,
    dirichlet,
    sample_batch,
    token_budgets,
)
from polymodal.data.spans import (
    EOS,
    MAX_SPANNED_LENGTH,
    PAD,
    is_sentinel,
    merge_spans,
    sample_keep,
    sentinel,
    span_mask,
)
from polymodal.modalities import FOURM21_INPUTS, Kind, Modality

from .conftest import TINY_MODS

# 4M's text layout needs ids past the 204 special and sentinel ids: a sequence of its own (12 tokens).
SEQ = modalities.register(Modality("text@masktest", Kind.SEQUENCE, vocab_size=260, max_length=12, pos_table_len=32))
# pixels 4x4, image tokens 4x4, global tokens 2x2, the sequence, vectors (6 of 8)
MODS = {m.name: m for m in (*TINY_MODS, SEQ) if m.kind is not Kind.SEQUENCE or m is SEQ}
GRIDS = ("rgb@test", "tok_a@test", "tok_global@test")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_content(n: int, g: torch.Generator, vocab: int = 40) -> torch.Tensor:
    """n ids: n - 1 words (ids past the sentinels) then [EOS]."""
    return torch.cat([torch.randint(204, 204 + vocab, (n - 1,), generator=g), torch.tensor([EOS])])


def raw_batch(b: int, seed: int = 0, *, mods=MODS, empty_rows=(), longest: int | None = None
              ) -> dict[str, torch.Tensor]:
    g = gen(seed)
    raw = {}
    for name, m in mods.items():
        if m.kind is Kind.PIXELS:
            raw[name] = torch.rand(b, m.channels, *m.image_size, generator=g)
        elif m.kind is Kind.IMAGE_TOKENS:
            raw[name] = torch.randint(0, m.vocab_size, (b, m.num_tokens), generator=g)
        elif m.kind is Kind.SEQUENCE_EMB:
            raw[name] = torch.randn(b, m.max_length, m.emb_dim, generator=g) + 3.0  # no zero vectors
        else:
            x = torch.full((b, m.max_length), PAD)
            for i in range(b):
                if i in empty_rows:
                    continue
                n = int(torch.randint(1, (longest or m.max_length) + 1, (1,), generator=g))
                x[i, :n] = random_content(n, g, vocab=m.vocab_size - 204)
            raw[name] = x
    return raw


def seq_parts(tokens, i):
    """Input and target ids of row i of a sequence modality."""
    v = tokens.values[i]
    return v[tokens.is_input[i]], v[tokens.is_target[i]]


def counts(batch, role: str) -> torch.Tensor:
    return sum(getattr(t, role).sum(dim=1) for t in batch.values())


# --------------------------------------------------------------------------------------------- span masking


def test_merge_spans_restores_4ms_example():
    inp = [4321, 5, 4365, 6, 4343, 7, 4352, 4295, 8]
    tgt = [5, 4315, 4285, 6, 4324, 4343, 4337, 7, 4305, 8, 4338, 4321, 4298, 4285, 3, 9]
    expect = [4321, 4315, 4285, 4365, 4324, 4343, 4337, 4343, 4305, 4352, 4295, 4338, 4321, 4298, 4285, 3]
    assert merge_spans(inp, tgt).tolist() == expect


@pytest.mark.parametrize("n", [1, 2, 3, 12, 77, 290, MAX_SPANNED_LENGTH])
def test_span_mask_is_reversible_and_well_formed(n):
    g = gen(n)
    for trial in range(40):
        seq = random_content(n, g)
        budget = None if trial % 4 == 0 else int(torch.randint(0, n + 1, (1,), generator=g))
        keep = [None, 0.0, 1.0, 0.5][trial % 4]
        inp, tgt = span_mask(seq, generator=g, num_input_tokens=budget, keep_prob=keep)
        assert torch.equal(merge_spans(inp, tgt), seq)
        if budget is not None:
            assert len(inp) <= budget
        # Sentinels [S_1].. in order in the input, and [S_1] .. [S_{k+1}] in the target.
        s_in = inp[is_sentinel(inp)].tolist()
        s_tg = tgt[is_sentinel(tgt)].tolist()
        k = len(s_tg) - 1
        assert s_tg == [sentinel(j) for j in range(1, k + 2)] and tgt[0] == sentinel(1)
        assert s_in == ([] if budget == 0 else [sentinel(j) for j in range(1, k + 1)])
        assert len(tgt) == n - (len(inp) - len(s_in)) + k + 1


def test_span_mask_extremes():
    seq = random_content(9, gen(0))
    inp, tgt = span_mask(seq, generator=gen(1), num_input_tokens=0)
    assert inp.numel() == 0 and tgt.tolist() == [sentinel(1), *seq.tolist(), sentinel(2)]
    inp, tgt = span_mask(seq, generator=gen(1), keep_prob=1.0)
    assert torch.equal(inp, seq) and tgt.tolist() == [sentinel(1)]
    inp, tgt = span_mask(seq, generator=gen(1), keep_prob=0.0, num_input_tokens=5)
    assert inp.tolist() == [sentinel(1)]


def test_target_cut_is_4ms_window():
    """A target over budget is a window of the full target starting at a sentinel: exactly the budget long, or
    running to the end of the target (the earliest sentinel from which the rest fits)."""
    g = gen(3)
    seen_short = seen_full = False
    for _ in range(300):
        n = int(torch.randint(2, 40, (1,), generator=g))
        seq = random_content(n, g)
        budget = int(torch.randint(0, 20, (1,), generator=g))
        state = g.get_state()
        inp, full = span_mask(seq, generator=g, keep_prob=0.5)
        g.set_state(state)
        inp2, tgt = span_mask(seq, generator=g, keep_prob=0.5, num_target_tokens=budget)
        assert torch.equal(inp, inp2)
        if len(full) <= budget:
            assert torch.equal(tgt, full)
            continue
        assert len(tgt) <= budget
        if budget == 0:
            assert tgt.numel() == 0
            continue
        assert is_sentinel(tgt[:1]).all()
        start = (full == tgt[0]).nonzero()[0, 0]
        assert torch.equal(full[start:start + len(tgt)], tgt)
        if len(tgt) < budget:
            assert start + len(tgt) == len(full)
            seen_short = True
        else:
            seen_full = True
    assert seen_short and seen_full


def test_keep_loop_matches_4ms_sequential_loop():
    """Chunked trials give the distribution of 4M's loop (redraw with p * 0.9 until the input fits)."""
    import random

    rng = random.Random(0)
    n, budget, p0, rows = 40, 6, 0.9, 3000

    def reference() -> tuple[int, int]:
        p = p0
        while True:
            keep = [rng.random() < p for _ in range(n)]
            spans = sum(1 for i in range(n) if not keep[i] and (i == 0 or keep[i - 1]))
            if sum(keep) + spans <= budget:
                return sum(keep), spans
            p *= 0.9

    ref = torch.tensor([reference() for _ in range(rows)], dtype=torch.float64)
    keep = sample_keep(torch.full((rows,), n), torch.full((rows,), budget), torch.full((rows,), p0),
                       generator=gen(0))
    kept = keep.sum(dim=1).double()
    spans = (~keep & ~F.pad(~keep[:, :-1], (1, 0), value=False)).sum(dim=1).double()
    for ours, theirs in ((kept, ref[:, 0]), (spans, ref[:, 1])):
        se = (ours.var() / rows + theirs.var() / rows).sqrt()
        assert abs(ours.mean() - theirs.mean()) < 4 * se, (ours.mean(), theirs.mean())


# --------------------------------------------------------------------------------------------------- budgets


def test_token_budgets_fill_exactly_and_respect_caps():
    g = gen(0)
    b, m = 200, 5
    cap = torch.randint(0, 30, (b, m), generator=g)
    alpha = torch.tensor([0.01, 0.1, 1.0, 10.0, 0.0], dtype=torch.float64).expand(b, m)
    budget = token_budgets(40, cap, alpha, generator=g)
    assert (budget <= cap).all() and (budget[:, 4] == 0).all()  # alpha 0: never
    room = (cap * (alpha > 0)).sum(dim=1)
    assert torch.equal(budget.sum(dim=1), room.clamp(max=40))  # exactly 40, or everything there is


def test_tiny_alpha_concentrates_budgets():
    g = gen(1)
    cap = torch.full((400, 4), 1000)
    share = {}
    for a in (0.01, 10.0):
        budget = token_budgets(100, cap, torch.full((400, 4), a, dtype=torch.float64), generator=g)
        share[a] = (budget.max(dim=1).values >= 95).float().mean().item()
    assert share[0.01] > 0.85 and share[10.0] < 0.05, share


def test_dirichlet_moments_and_zero_alphas():
    alpha = torch.tensor([0.01, 0.5, 2.0, 0.0, 7.0], dtype=torch.float64)
    p = dirichlet(alpha.expand(20_000, 5), generator=gen(2))
    assert torch.allclose(p.sum(dim=1), torch.ones(20_000, dtype=torch.float64))
    assert (p[:, 3] == 0).all()
    assert torch.allclose(p.mean(dim=0), alpha / alpha.sum(), atol=0.01)


@pytest.mark.parametrize("refill", ["clamped", "all"])
def test_batch_budgets_disjoint_and_valid(refill):
    cfg = MaskingConfig(num_input_tokens=8, num_target_tokens=8, refill=refill)
    raw = raw_batch(64, seed=1)
    batch = sample_batch(raw, MODS, cfg, generator=gen(0))
    assert list(batch) == list(raw)
    for name, t in batch.items():
        validate_tokens(name, MODS[name], t)  # shapes, ids, disjoint, input-only without targets
    assert not batch["rgb@test"].is_target.any() and not batch["vec@test"].is_target.any()
    n_in, n_tg = counts(batch, "is_input"), counts(batch, "is_target")
    if refill == "all":  # the grids always have room for 8 + 8 here: totals are exact
        assert (n_in == 8).all() and (n_tg == 8).all()
    else:  # 4M: a sequence may leave part of its budget unused
        assert (n_in <= 8).all() and (n_tg <= 8).all()
        assert (n_in == 8).float().mean() > 0.3 and (n_tg == 8).float().mean() > 0.3
    seq = batch[SEQ.name]
    for i in range(64):
        inp, tgt = seq_parts(seq, i)
        n = int((raw[SEQ.name][i] != PAD).sum())
        assert len(inp) <= n and len(tgt) <= n + 2
        assert not (seq.is_input[i] & seq.is_target[i]).any()
        width = len(inp) + len(tgt)
        assert seq.is_input[i, :len(inp)].all() and seq.is_target[i, len(inp):width].all()  # input, then target
        assert (seq.values[i, width:] == PAD).all()


def test_grid_only_batches_get_exact_budgets_and_clamped_remainder_moves():
    mods = {n: MODS[n] for n in GRIDS}
    raw = raw_batch(32, mods=mods)
    cfg = MaskingConfig(num_input_tokens=10, num_target_tokens=8, input_alphas={"tok_global@test": 1000.0})
    batch = sample_batch(raw, mods, cfg, generator=gen(4))
    assert (counts(batch, "is_input") == 10).all() and (counts(batch, "is_target") == 8).all()
    # tok_global (4 cells) draws nearly all of the input budget; what its size clamps goes to the others.
    assert (batch["tok_global@test"].is_input.sum(dim=1) == 4).all()
    # 4M drops what the clamp cut off.
    cfg = MaskingConfig(num_input_tokens=10, num_target_tokens=8, input_alphas={"tok_global@test": 1000.0},
                        refill="none")
    batch = sample_batch(raw, mods, cfg, generator=gen(4))
    assert (batch["tok_global@test"].is_input.sum(dim=1) == 4).all()
    assert (counts(batch, "is_input") < 10).float().mean() > 0.8
    # More than there is: everything there is.
    cfg = MaskingConfig(num_input_tokens=100, num_target_tokens=100)
    batch = sample_batch(raw, mods, cfg, generator=gen(5))
    assert (counts(batch, "is_input") + counts(batch, "is_target") == 16 + 16 + 4).all()
    assert (batch["tok_a@test"].is_input | batch["tok_a@test"].is_target).all()


def test_alpha_zero_roles_and_missing_modalities():
    raw = raw_batch(16, seed=2, empty_rows=(0, 5))
    lengths = {"tok_a@test": torch.tensor([0] * 4 + [16] * 12), "vec@test": torch.tensor([3] * 16)}
    cfg = MaskingConfig(num_input_tokens=12, num_target_tokens=12, input_alphas={"tok_global@test": 0.0},
                        target_alphas={SEQ.name: 0.0})
    batch = sample_batch(raw, MODS, cfg, generator=gen(0), lengths=lengths)
    assert not batch["tok_global@test"].is_input.any()
    assert not batch[SEQ.name].is_target.any()
    assert not batch["tok_a@test"].is_input[:4].any() and not batch["tok_a@test"].is_target[:4].any()
    seq = batch[SEQ.name]
    assert not seq.is_input[[0, 5]].any() and not seq.is_target[[0, 5]].any()
    assert not batch["vec@test"].is_input[:, 3:].any()  # past the valid prefix
    with pytest.raises(ValueError, match="either present"):
        sample_batch(raw, MODS, cfg, generator=gen(0), lengths={"tok_a@test": torch.full((16,), 3)})


def test_sequence_budget_counts_sentinels_and_target_restores_content():
    mods = {SEQ.name: MODS[SEQ.name]}
    raw = raw_batch(64, seed=3, mods=mods, longest=10)  # a full target (<= n + 2) fits the size cap of 12
    for n_in in (1, 3, 5):
        cfg = MaskingConfig(num_input_tokens=n_in, num_target_tokens=100)
        seq = sample_batch(raw, mods, cfg, generator=gen(n_in))[SEQ.name]
        for i in range(64):
            inp, tgt = seq_parts(seq, i)
            assert 1 <= len(inp) <= n_in  # kept tokens plus one sentinel per span
            content = raw[SEQ.name][i][raw[SEQ.name][i] != PAD]
            assert torch.equal(merge_spans(inp, tgt), content)  # target budget is ample: the full target


def test_sequence_width_options():
    raw = raw_batch(8, seed=4)
    tight = sample_batch(raw, MODS, MaskingConfig(num_input_tokens=8, num_target_tokens=8), generator=gen(0))
    fixed = sample_batch(raw, MODS, MaskingConfig(num_input_tokens=8, num_target_tokens=8,
                                                  sequence_width="fixed"), generator=gen(0))
    s, f = tight[SEQ.name], fixed[SEQ.name]
    assert f.values.shape[1] == 2 * 12 + 2
    used = (s.is_input | s.is_target).sum(dim=1)
    assert s.values.shape[1] == max(1, int(used.max()))
    assert torch.equal(f.values[:, :s.values.shape[1]], s.values) and not f.is_input[:, s.values.shape[1]:].any()


# ---------------------------------------------------------------------------------------------- keep schemes


def keep_batch(scheme: str, seed: int = 0):
    mods = {SEQ.name: MODS[SEQ.name]}
    raw = raw_batch(200, seed=seed, mods=mods, longest=10)  # a full target (<= n + 2) fits the size cap of 12
    cfg = MaskingConfig(num_input_tokens=12, num_target_tokens=30, keep_schemes={SEQ.name: scheme})
    return raw[SEQ.name], sample_batch(raw, mods, cfg, generator=gen(seed))[SEQ.name]


def test_keep_scheme_all_gives_the_whole_sequence_as_input():
    raw, seq = keep_batch("all")  # input budget 12 >= every length: nothing is masked
    for i in range(200):
        inp, tgt = seq_parts(seq, i)
        assert torch.equal(inp, raw[i][raw[i] != PAD]) and tgt.tolist() == [sentinel(1)]


def test_keep_scheme_binary_is_all_input_or_all_target():
    raw, seq = keep_batch("binary")
    kinds = set()
    for i in range(200):
        inp, tgt = seq_parts(seq, i)
        content = raw[i][raw[i] != PAD]
        if inp.tolist() == [sentinel(1)]:
            assert tgt.tolist() == [sentinel(1), *content.tolist(), sentinel(2)]
            kinds.add("target")
        else:
            assert torch.equal(inp, content)
            kinds.add("input")
    assert kinds == {"input", "target"}


def test_keep_scheme_random_masks_a_random_part():
    raw, seq = keep_batch("random")
    frac = []
    for i in range(200):
        inp, _ = seq_parts(seq, i)
        n = int((raw[i] != PAD).sum())
        if n >= 6:
            frac.append(int((~is_sentinel(inp)).sum()) / n)
    frac = torch.tensor(frac)
    assert 0.3 < frac.mean() < 0.7 and ((frac > 0.05) & (frac < 0.95)).float().mean() > 0.5


def test_keep_decays_when_over_budget():
    """'all' with a budget shorter than the sequence lowers the keep probability until the input fits (4M)."""
    mods = {SEQ.name: MODS[SEQ.name]}
    raw = raw_batch(100, seed=6, mods=mods)
    cfg = MaskingConfig(num_input_tokens=3, num_target_tokens=0, keep_schemes={SEQ.name: "all"})
    seq = sample_batch(raw, mods, cfg, generator=gen(0))[SEQ.name]
    assert (seq.is_input.sum(dim=1) <= 3).all() and (seq.is_input.sum(dim=1) >= 1).all()
    assert not seq.is_target.any()


# ----------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_batch_different_seed_different_masks():
    raw = raw_batch(16, seed=7)
    cfg = MaskingConfig(num_input_tokens=10, num_target_tokens=10, mixture="4m21")
    a = sample_batch(raw, MODS, cfg, generator=gen(11))
    b = sample_batch(dict(reversed(list(raw.items()))), MODS, cfg, generator=gen(11))  # dict order is irrelevant
    c = sample_batch(raw, MODS, cfg, generator=gen(12))
    for name in raw:
        for f in ("values", "is_input", "is_target"):
            assert torch.equal(getattr(a[name], f), getattr(b[name], f)), (name, f)
    assert any(not torch.equal(a[n].is_input, c[n].is_input) for n in raw)


# ------------------------------------------------------------------------------------------ 4M-21's mixture


def test_fourm21_mixture_table():
    mods = tuple(modalities.get(n) for n in sorted(FOURM21_INPUTS))
    mix = build_mixture(MaskingConfig(mixture="4m21"), mods)
    col = {n: i for i, n in enumerate(mix.names)}
    assert mix.weights.tolist() == list(FOURM21_WEIGHTS) and mix.input_alphas.shape == (7, 19)
    assert mix.input_alphas[:4, col["tok_depth@224"]].tolist() == [0.01, 0.1, 1.0, 10.0]
    assert mix.input_alphas[4].nonzero()[:, 0].tolist() == [col["rgb@224"]]  # RGB-to-all
    assert mix.input_alphas[5, col["caption"]] == 5.0 and mix.keep["caption"][5] == "all"  # caption-biased
    assert mix.input_alphas[6, col["t5_caption"]] == 5.0 and mix.keep["t5_caption"][6] == "all"  # T5-biased
    assert mix.input_alphas[5, col["t5_caption"]] == 0 and mix.input_alphas[6, col["caption"]] == 0
    assert (mix.target_alphas[:, [col["rgb@224"], col["t5_caption"]]] == 0).all()  # input-only
    assert mix.target_alphas[4:, col["tok_clip@224"]].tolist() == [0.5, 0.5, 0.5]
    assert set(mix.keep["color_palette"]) == {"binary"}


def test_fourm21_mixture_conditions_on_rgb_tokens_without_pixels():
    names = ("tok_rgb@224", "tok_depth@224", "caption")
    mix = build_mixture(MaskingConfig(mixture="4m21"), tuple(modalities.get(n) for n in names))
    col = {n: i for i, n in enumerate(mix.names)}
    assert mix.input_alphas[4].nonzero()[:, 0].tolist() == [col["tok_rgb@224"]]  # RGB-to-all on tokens
    assert mix.input_alphas[4, col["tok_rgb@224"]] == 1000.0
    assert mix.target_alphas[:, col["tok_rgb@224"]].tolist() == [0.01, 0.1, 1.0, 10.0, 0.5, 0.5, 0.5]
    with_pixels = build_mixture(MaskingConfig(mixture="4m21"), tuple(modalities.get(n) for n in ("rgb@224", *names)))
    col = {n: i for i, n in enumerate(with_pixels.names)}
    assert with_pixels.input_alphas[4, col["tok_rgb@224"]] == 0.0  # pixels take the role when present


def test_fourm21_mixture_samples_all_19_domains():
    mods = {n: modalities.get(n) for n in FOURM21_INPUTS}
    g = gen(0)
    raw = {}
    for name, m in mods.items():
        if m.kind is Kind.PIXELS:
            raw[name] = torch.randn(6, 3, 224, 224, generator=g)
        elif m.kind is Kind.IMAGE_TOKENS:
            raw[name] = torch.randint(0, m.vocab_size, (6, m.num_tokens), generator=g)
        elif m.kind is Kind.SEQUENCE_EMB:
            raw[name] = torch.randn(6, m.max_length, m.emb_dim, generator=g)
        else:
            x = torch.full((6, m.max_length), PAD)
            for i in range(6):
                n = int(torch.randint(1, m.max_length + 1, (1,), generator=g))
                x[i, :n] = random_content(n, g, vocab=2000)
            raw[name] = x
    raw["caption"][2] = PAD  # a sample without a caption
    cfg = MaskingConfig(num_input_tokens=256, num_target_tokens=256, mixture="4m21")
    for seed in range(3):
        batch = sample_batch(raw, mods, cfg, generator=gen(seed))
        assert set(batch) == set(FOURM21_INPUTS)
        for name, t in batch.items():
            validate_tokens(name, mods[name], t)
        assert (counts(batch, "is_input") <= 256).all() and (counts(batch, "is_target") <= 256).all()
        assert not (batch["caption"].is_input[2].any() or batch["caption"].is_target[2].any())
    # RGB-to-all alone: RGB takes all its 196 patches, nothing else may be an input.
    only_rgb = {n: 0.0 for n in FOURM21_INPUTS if n != "rgb@224"}
    batch = sample_batch(raw, mods, MaskingConfig(num_input_tokens=256, num_target_tokens=256, mixture="4m21",
                                                  input_alphas=only_rgb), generator=gen(9))
    assert (counts(batch, "is_input") == 196).all() and (batch["rgb@224"].is_input.sum(dim=1) == 196).all()


# ------------------------------------------------------------------------------------------------- errors


def test_config_and_input_errors():
    with pytest.raises(ConfigError, match="keep_schemes"):
        MaskingConfig(keep_schemes={SEQ.name: "some"})
    with pytest.raises(ConfigError, match="refill"):
        MaskingConfig(refill="some")
    with pytest.raises(ConfigError, match="sequence_width"):
        MaskingConfig(sequence_width="wide")
    raw = raw_batch(2)
    with pytest.raises(ConfigError, match="masking.mixture: got 'nope', expected one of 'uniform', '4m21'"):
        MaskingConfig(mixture="nope")
    with pytest.raises(ValueError, match="not a registered modality"):
        sample_batch(raw, MODS, MaskingConfig(input_alphas={"captoin": 1.0}), generator=gen(0))
    with pytest.raises(ValueError, match="no modality given"):
        sample_batch(raw, {n: MODS[n] for n in GRIDS}, MaskingConfig(), generator=gen(0))
    bad = dict(raw, **{"tok_a@test": raw["tok_a@test"][:, :5]})
    with pytest.raises(ValueError, match="image tokens"):
        sample_batch(bad, MODS, MaskingConfig(), generator=gen(0))


def test_config_names_every_mixture_the_masking_knows():
    """`MaskingConfig.mixture`'s allowed names (config is below data and cannot import the table) are the table's."""
    import dataclasses

    from polymodal.data.masking import MIXTURES

    field = {f.name: f for f in dataclasses.fields(MaskingConfig)}["mixture"]
    assert set(field.metadata["rule"].choices) == set(MIXTURES)
