"""`polymodal data label --model`: a model for a labeler that takes none, and a model that is neither a folder nor a
Hub repo id, are refused with one line naming the labeler (the first was ignored without a word, the second gave
huggingface_hub's repo-id validation text)."""

from __future__ import annotations

import pytest

from polymodal.data.labelers.base import build_labelers


def test_a_model_for_an_offline_labeler_is_refused():
    with pytest.raises(ValueError, match=r"^labeler canny takes no model \(--model canny=x\); only hf-\* labelers do$"):
        build_labelers(["canny"], {"canny": "x"})


def test_a_model_that_is_no_folder_nor_repo_id_names_the_labeler(tmp_path):
    pytest.importorskip("transformers")
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"^labeler hf-depth: --model hf-depth='.*nope': no such folder, and not a "
                                         r"Hub repo id \(owner/name\)$"):
        build_labelers(["hf-depth"], {"hf-depth": missing})
