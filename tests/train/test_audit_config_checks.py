"""Settings that each pass their own field's check but cannot train together are refused by `polymodal train` with
one line naming the field and exit code 2 (they were tracebacks: ValueError, or a RuntimeError from backward when
no token was ever a target); the ones known before the run starts leave no run folder behind."""

from __future__ import annotations

import pytest

from polymodal.cli import main

from .helpers import BASE, RECIPE

ALL_ZERO = '{"tok_shape@syn": 0, "tok_depth@syn": 0, "labels@syn": 0}'


@pytest.mark.parametrize("override, message", [
    ('masking.input_alphas={"nope": 1}', "masking.input_alphas: 'nope' is not a registered modality"),
    ("masking.num_target_tokens=0", "masking.num_target_tokens: got 0, but 4M training needs tokens to predict "
                                    "(an integer >= 1)"),
    (f"masking.target_alphas={ALL_ZERO}", "masking.target_alphas: every target alpha of tok_shape@syn, "
                                          "tok_depth@syn, labels@syn is 0: no token would ever be a target"),
    ("train.grad_accum=3", "train.batch_size 8 is not divisible by train.grad_accum 3"),
    ("data.source=tokens", 'data.source="tokens" needs data.path (a token dataset) or data.mixture {path: weight}'),
])
def test_settings_that_cannot_train_are_refused_before_the_run_folder(tmp_path, capsys, override, message):
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={tmp_path / 'run'}", override]) == 2
    assert capsys.readouterr().err.strip() == f"polymodal train: {message}"
    assert not (tmp_path / "run").exists()


def test_a_mask_chunk_that_does_not_divide_the_micro_batch_is_one_line(tmp_path, capsys):
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={tmp_path / 'run'}", "data.mask_chunk=3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "polymodal train: a micro-batch of 8 samples (8 / 1 ranks / 1 accumulation steps) is not a multiple of "
        "data.mask_chunk=3; set data.mask_chunk to a divisor of 8")
