"""Specialists derived from a 4M recipe: one input, one output, every token of both; a few training steps run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from polymodal.config import DataConfig, ExperimentConfig, MaskingConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.eval.specialists import specialist_config

from ..data.helpers import index_dataset

NAMES = ("tok_a@data", "tok_b@data", "caption")


def base(path, out) -> ExperimentConfig:
    return ExperimentConfig(
        objective="fourm",
        model=ModelConfig.preset("test", domains_in=NAMES, domains_out=NAMES, vocab_sizes={"caption": 2000}),
        masking=MaskingConfig(num_input_tokens=12, num_target_tokens=12, mixture="4m21"),
        data=DataConfig(source="tokens", path=str(path), val_samples=0, workers=0, shuffle_buffer=8, mask_chunk=4),
        optim=OptimConfig(base_lr=1e-2),
        train=TrainConfig(out_dir=str(out), steps=3, batch_size=4, save_every=0, log_every=1, eval_every=0,
                          progress=False, tensorboard=False),
    )


def test_specialist_takes_one_input_and_one_whole_target(tmp_path):
    cfg = specialist_config(base(tmp_path, tmp_path / "run"), "caption", source="tok_a@data", target="caption")
    # a sequence target is an input domain too (4M decodes it autoregressively), never given as one (alpha 0)
    assert cfg.model.domains_in == ("tok_a@data", "caption") and cfg.model.domains_out == ("caption",)
    assert cfg.model.dim == base(tmp_path, tmp_path).model.dim and cfg.model.vocab_sizes == {"caption": 2000}
    m = cfg.masking
    assert m.num_input_tokens == 16 and m.num_target_tokens == 256 + 2 and m.mixture == "uniform"
    assert m.input_alphas == {"caption": 0.0} and m.target_alphas == {"tok_a@data": 0.0}
    assert cfg.train.steps == 3 and cfg.train.out_dir.endswith("run_specialist_caption")
    with pytest.raises(ValueError, match="no tok_depth@64"):
        specialist_config(base(tmp_path, tmp_path), "depth", source="tok_a@data")


def test_specialist_trains_a_few_steps(tmp_path):
    from polymodal.train.loop import train

    index_dataset(tmp_path / "tokens", 16, shard_size=8, names=NAMES)
    cfg = specialist_config(base(tmp_path / "tokens", tmp_path / "run"), "b", source="tok_a@data",
                            target="tok_b@data")
    result = train(cfg)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    assert (tmp_path / "run_specialist_b" / "release").is_dir()


def test_a_specialist_with_unused_parameters_resumes_to_the_straight_run(tmp_path):
    """A caption specialist never uses the mask token (no image target), so its optimizer holds no state for it;
    a paused run must still resume (found when the boxes specialist of the default model was extended)."""
    from polymodal.train.loop import train

    from ..train.helpers import assert_same_weights, release_weights

    index_dataset(tmp_path / "tokens", 16, shard_size=8, names=NAMES)

    def cfg(out, stop_at=0):
        c = specialist_config(base(tmp_path / "tokens", out), "caption", source="tok_a@data", target="caption")
        return dataclasses.replace(c, train=dataclasses.replace(c.train, steps=4, save_every=2, stop_at=stop_at))

    straight = train(cfg(tmp_path / "straight"))
    assert train(cfg(tmp_path / "paused", stop_at=2)).steps == 2
    resumed = train(cfg(tmp_path / "paused"))
    assert resumed.steps == straight.steps == 4
    assert_same_weights(release_weights(straight.run_dir), release_weights(resumed.run_dir))
