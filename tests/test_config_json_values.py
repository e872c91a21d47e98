"""The numbers and flags of official JSON configs are read by one pair of helpers (`config.json_number`,
`config.json_flag`): a 4M model's config.json (`model.checkpoint.config_from_official`) and a released tokenizer's
(`tokenizers.ml4m.folder.reference_arg`) word the same bad value in the same line, each with its own error type."""

from __future__ import annotations

import pytest

from polymodal.config import ConfigError, json_flag, json_number
from polymodal.model.checkpoint import config_from_official
from polymodal.tokenizers.base import TokenizerLoadError
from polymodal.tokenizers.ml4m.folder import reference_arg

WHERE = "weights/config.json"
# A valid 4M config of the smallest kind: one field at a time is spoiled below.
OFFICIAL = {"dim": 64, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 4, "domains_in": ["tok_rgb@224"],
            "domains_out": ["tok_rgb@224"]}


def _model_error(**fields) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_official({**OFFICIAL, **fields}, {}, source=WHERE)
    return str(e.value)


def _tokenizer_error(key: str, value, kind: type) -> str:
    with pytest.raises(TokenizerLoadError) as e:
        reference_arg({key: value}, key, kind, 0, WHERE)
    return str(e.value)


@pytest.mark.parametrize("value", ["two", [768], {"n": 1}, "1.5", 2.5, True])
def test_a_bad_integer_is_one_line_alike_for_a_model_and_a_tokenizer(value):
    expected = f"{WHERE}: num_heads={value!r} is not an integer"
    assert _model_error(num_heads=value) == expected
    assert _tokenizer_error("num_heads", value, int) == expected


@pytest.mark.parametrize("value", ["false", "no", 2, [True]])
def test_a_bad_flag_is_one_line_alike_for_a_model_and_a_tokenizer(value):
    expected = f"{WHERE}: qkv_bias={value!r} is not true or false"
    assert _model_error(qkv_bias=value) == expected
    assert _tokenizer_error("qkv_bias", value, bool) == expected


def test_good_values_read_as_before():
    cfg = config_from_official({**OFFICIAL, "num_heads": "8", "mlp_ratio": 2, "qkv_bias": False}, {}, source=WHERE)
    assert (cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.proj_bias) == (8, 2.0, False, True)
    assert reference_arg({"n": "16", "f": False}, "n", int, 0, WHERE) == 16
    assert reference_arg({"n": "16", "f": False}, "f", bool, True, WHERE) is False
    # null: a tokenizer argument's default (the reference's None); a model's config field is refused.
    assert reference_arg({"n": None}, "n", int, 7, WHERE) == 7
    assert _model_error(mlp_ratio=None) == f"{WHERE}: mlp_ratio=None is not a number"


def test_the_helpers_raise_the_error_type_they_are_given():
    assert json_number("3", int, "k", WHERE) == 3 and json_number(1, float, "k", WHERE) == 1.0
    assert json_number(384.0, int, "k", WHERE) == 384  # a whole number written as a float is that number
    assert json_flag(True, "k", WHERE) is True and json_flag(0, "k", WHERE) is False
    with pytest.raises(ConfigError, match=r"^x: k='a' is not a number$"):
        json_number("a", float, "k", "x")
    with pytest.raises(TokenizerLoadError, match=r"^x: k=None is not true or false$"):
        json_flag(None, "k", "x", error=TokenizerLoadError)
