"""4M-21's masking mixture against its configuration, written out here as literal numbers (not read from the code's
own table): apple/ml-4m cfgs/default/4m/alphas_mixture/main/mix_mod21_all2allmix_rgb2all_capT5bias.yaml, the
pre-training mixture of 4M-21 (all-to-all at alphas 0.01, 0.1, 1, 10; RGB-to-all; caption-biased; T5-biased).
And that the sampler draws each sample's component by the mixture's weights."""

from __future__ import annotations

import pytest
import torch

from polymodal import modalities
from polymodal.config import MaskingConfig
from polymodal.data import masking
from polymodal.data.masking import Mixture, build_mixture, sample_batch
from polymodal.modalities import FOURM21_INPUTS

from .conftest import TINY_MODS

# sampling_weights of the yaml
WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
# name: (input_alphas, target_alphas, keep) as the yaml gives them; keep None where the yaml has none
GRID = ([0.01, 0.1, 1.0, 10.0, 0.0, 0.05, 0.05], [0.01, 0.1, 1.0, 10.0, 0.5, 0.5, 0.5], None)
RANDOM = ["random"] * 7
YAML = {
    "rgb@224": ([0.01, 0.1, 1.0, 10.0, 1000.0, 0.05, 0.05], [0.0] * 7, None),
    "caption": ([0.01, 0.1, 1.0, 10.0, 0.0, 5.0, 0.0], [0.01, 0.1, 1.0, 10.0, 0.5, 0.0, 0.5],
                ["random", "random", "random", "random", "random", "all", "random"]),
    "t5_caption": ([0.01, 0.1, 1.0, 10.0, 0.0, 0.0, 5.0], [0.01, 0.1, 1.0, 10.0, 0.5, 0.5, 0.0],
                   ["random", "random", "random", "random", "random", "random", "all"]),
    "det": (*GRID[:2], RANDOM),
    "tok_rgb@224": GRID,
    "tok_normal@224": GRID,
    "tok_depth@224": GRID,
    "tok_semseg@224": GRID,
    "tok_clip@224": GRID,
    "human_poses": (*GRID[:2], RANDOM),
    "tok_dinov2@224": GRID,
    "tok_dinov2_global": GRID,
    "tok_imagebind@224": GRID,
    "tok_imagebind_global": GRID,
    "tok_canny_edge@224": GRID,
    "tok_sam_edge@224": GRID,
    "color_palette": (*GRID[:2], ["binary"] * 7),
    "metadata": (*GRID[:2], RANDOM),
    "sam_instance": (*GRID[:2], RANDOM),
}
# One deliberate difference: t5_caption is a sequence of vectors, input only; the yaml gives it target alphas that
# 4M allocates a budget for and never uses, here it gets none.
INPUT_ONLY = {"rgb@224", "t5_caption"}


@pytest.fixture(scope="module")
def mix() -> Mixture:
    return build_mixture(MaskingConfig(mixture="4m21"), tuple(modalities.get(n) for n in sorted(FOURM21_INPUTS)))


def test_the_yaml_covers_the_19_domains():
    assert set(YAML) == set(FOURM21_INPUTS)


def test_weights_are_the_yamls(mix):
    assert mix.weights.tolist() == WEIGHTS


@pytest.mark.parametrize("name", sorted(YAML))
def test_alphas_and_keep_schemes_are_the_yamls(mix, name):
    a_in, a_tg, keep = YAML[name]
    col = mix.names.index(name)
    assert mix.input_alphas[:, col].tolist() == a_in
    assert mix.target_alphas[:, col].tolist() == ([0.0] * 7 if name in INPUT_ONLY else a_tg)
    assert mix.keep.get(name) == (tuple(keep) if keep else None)


def test_components_are_drawn_by_the_weights(monkeypatch):
    """Two components weighted 3 : 1, the first giving every input to one modality, the second to the other: about
    3/4 of the samples have their inputs in the first (a uniform draw would give 1/2)."""
    a, b = TINY_MODS[1], TINY_MODS[2]  # two image-token modalities
    mods = {a.name: a, b.name: b}
    mix = Mixture.from_table(sorted(mods.values(), key=lambda m: m.name), [3.0, 1.0],
                             {a.name: ([1.0, 0.0], [0.0, 0.0], None), b.name: ([0.0, 1.0], [0.0, 0.0], None)})
    monkeypatch.setattr(masking, "build_mixture", lambda cfg, ms: mix)
    n = 4000
    g = torch.Generator().manual_seed(0)
    raw = {m.name: torch.zeros(n, m.num_tokens, dtype=torch.long) for m in mods.values()}
    batch = sample_batch(raw, mods, MaskingConfig(num_input_tokens=2, num_target_tokens=0), generator=g)
    in_a = batch[a.name].is_input.any(dim=1)
    assert torch.equal(in_a, ~batch[b.name].is_input.any(dim=1))  # one component per sample
    share = float(in_a.double().mean())
    assert abs(share - 0.75) < 4 * (0.75 * 0.25 / n) ** 0.5, share  # 4 standard errors: 0.75 +- 0.027
