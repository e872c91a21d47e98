"""`Pipeline.save` into the folder the pipeline was loaded from (or a folder holding it) is refused in one line,
with nothing written: from Python it rewrote the weights it was reading (``half=True`` stored 13 of the tiny test
bundle's 85 float32 tensors as float16 in the source itself). `polymodal bundle` refused it already; the library
now does too."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from polymodal.pipeline import Pipeline, PipelineError


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["itself", "its parent"])
def test_saving_over_the_source_folder_is_refused_and_writes_nothing(bundle, tmp_path, where):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    before = _files(tmp_path)
    pipe = Pipeline.from_pretrained(copy)
    target = copy if where == "itself" else tmp_path
    with pytest.raises(PipelineError) as e:
        pipe.save(target, half=True)
    assert str(e.value) == (f"{target} holds {copy.resolve()}, which this pipeline was loaded from; save it to "
                            "another folder")
    assert _files(tmp_path) == before  # the source's float32 weights untouched
    assert {t.dtype for t in load_file(str(copy / "model" / "model.safetensors")).values()} == {torch.float32}


def test_a_tokenizer_folder_given_to_load_counts_as_a_source(bundle, tmp_path):
    shutil.copytree(bundle, tmp_path / "copy")
    tok = next(p for p in (tmp_path / "copy" / "tokenizers").iterdir() if p.name != "text")
    shutil.copytree(tok, tmp_path / "out" / "tok")
    pipe = Pipeline.from_pretrained(tmp_path / "copy", tokenizers=[str(tmp_path / "out" / "tok")])
    with pytest.raises(PipelineError, match=r"out holds .*/out/tok, which this pipeline was loaded from"):
        pipe.save(tmp_path / "out")


def test_saving_elsewhere_still_works_and_loads_back(pipe, bundle, tmp_path):
    loaded = Pipeline.from_pretrained(bundle)
    out = loaded.save(tmp_path / "again")
    again = Pipeline.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                  again.model.state_dict().values()))
    assert pipe.save(tmp_path / "built") == tmp_path / "built"  # a pipeline built in Python has no source
