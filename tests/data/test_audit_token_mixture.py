"""A token mixture that cannot be read is refused when the stream is set up, naming the field (were ValueErrors
with a traceback at the first step, after the run folder was written): every weight 0 (the message said 'need one
non-negative weight', and 0 is one), a text source without data.text_tokenizer."""

from __future__ import annotations

import pytest

from polymodal.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig
from polymodal.data.token_stream import TokenStream

from .helpers import CAPTION, GRID, index_dataset

MODS = {GRID.name: GRID, CAPTION.name: CAPTION}


def _cfg(mixture: dict, **data) -> ExperimentConfig:
    names = tuple(MODS)
    return ExperimentConfig(objective="fourm", model=ModelConfig.preset("test", domains_in=names, domains_out=names),
                            data=DataConfig(source="tokens", mixture=mixture, **data))


def test_a_mixture_whose_weights_are_all_zero_is_refused(tmp_path):
    index_dataset(tmp_path / "d", 8, shard_size=8)
    with pytest.raises(ConfigError, match=r"^data.mixture: every weight is 0 \(.*d: 0.0\); give a source a weight "
                                          r"> 0$"):
        TokenStream(_cfg({str(tmp_path / "d"): 0.0}), MODS)


def test_a_text_source_without_a_text_tokenizer_names_the_field(tmp_path):
    index_dataset(tmp_path / "d", 8, shard_size=8)
    (tmp_path / "c.txt").write_text("a red cube\n")
    with pytest.raises(ConfigError, match=r"^data.text_tokenizer: the text source .*c\.txt needs a text tokenizer$"):
        TokenStream(_cfg({str(tmp_path / "d"): 1.0, str(tmp_path / "c.txt"): 1.0}), MODS)


def test_a_token_stream_saved_with_other_workers_is_refused_on_load_naming_the_field(tmp_path):
    """data.workers is among the fields a resumed run may change, but a token stream's batch order depends on it:
    the rerun failed at its first step with the loader's ValueError traceback (after rewriting config.json)."""
    index_dataset(tmp_path / "d", 8, shard_size=8)
    stream = TokenStream(_cfg({str(tmp_path / "d"): 1.0}, workers=2), MODS)
    saved = {"batches": 3, "batch_size": 4, "seed": 0, "world": 1, "workers": 1, "group": 256, "weights": [1.0]}
    with pytest.raises(ConfigError, match=r"^data.workers: the checkpoint's token stream was read by 1 worker per "
                                          r"rank, this run asks 2; resume with data.workers=1 \(its batch order "
                                          r"depends on it\)$"):
        stream.load_state(saved)
    TokenStream(_cfg({str(tmp_path / "d"): 1.0}, workers=0), MODS).load_state(saved)  # 0 reads as 1 does
