"""Audit: a released repo whose snapshot in the Hub cache lacks its weights (a download cut off before the large
file was complete, or ``hf download ID config.json``), loaded offline by its id. The error says which repo and
how to complete it, not only that a folder named by a commit hash has no model.safetensors."""

from __future__ import annotations

import pytest

from polymodal.model import FourM
from polymodal.tokenizers import load_tokenizer

from .conftest import fixtures_dir
from .test_hub import COMMIT_A, cache, cache_repo, no_network  # noqa: F401 - fixtures used by name

REPO = "EPFL-VILAB/4M-21_B"
TOK_REPO = "EPFL-VILAB/4M_tokenizers_DINOv2-B14-global_8k_16_224"


def test_a_model_snapshot_without_weights_names_the_repo_and_the_fix(cache, no_network):  # noqa: F811
    snapshot = cache_repo(cache, REPO, {"config.json": fixtures_dir("ml4m-4m21-tiny", "config.json")},
                          commit=COMMIT_A)
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(REPO)
    assert str(e.value) == (f"{snapshot}: no model.safetensors (or other .safetensors file) in this folder; it is "
                            f"the Hub cache's snapshot of {REPO} at {COMMIT_A}, only partly downloaded: complete it "
                            f"with `hf download {REPO} --revision {COMMIT_A}`")
    assert not no_network


def test_a_tokenizer_snapshot_without_weights_names_the_repo_and_the_fix(cache, no_network):  # noqa: F811
    config = fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global", "config.json")
    snapshot = cache_repo(cache, TOK_REPO, {"config.json": config}, commit=COMMIT_A)
    with pytest.raises(FileNotFoundError) as e:
        load_tokenizer(TOK_REPO)
    assert str(e.value) == (f"{snapshot} is not a complete tokenizer folder: config.json but no model.safetensors; "
                            f"it is the Hub cache's snapshot of {TOK_REPO} at {COMMIT_A}, only partly downloaded: "
                            f"complete it with `hf download {TOK_REPO} --revision {COMMIT_A}`")


def test_a_local_folder_without_weights_gets_no_hub_advice(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(fixtures_dir("ml4m-4m21-tiny", "config.json").read_text())
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(tmp_path / "m")
    assert str(e.value) == f"{tmp_path / 'm'}: no model.safetensors (or other .safetensors file) in this folder"
