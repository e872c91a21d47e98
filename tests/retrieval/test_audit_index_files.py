"""A damaged gallery index folder (session 9 audit): a truncated or empty vectors file, a config.json that is not
JSON, not an object, or lacks a field, a vectors file without its keys. `GalleryIndex.load` raises a ValueError
that names the file and what is wrong, and `polymodal retrieve search` prints it on one line with exit code 2;
before, some of these were tracebacks (SafetensorError, AttributeError) and others a bare ``metric`` or ``keys``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from polymodal.cli import main
from polymodal.retrieval import GalleryIndex


@pytest.fixture
def folder(tmp_path):
    return GalleryIndex(torch.randn(5, 8), modality="minilm_global").save(tmp_path / "idx")


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


def _truncate(folder):
    raw = (folder / "vectors.safetensors").read_bytes()
    (folder / "vectors.safetensors").write_bytes(raw[:100])


DAMAGE = {
    "truncated vectors": (_truncate, "vectors.safetensors: not a readable safetensors file"),
    "empty vectors": (lambda f: (f / "vectors.safetensors").write_bytes(b""),
                      "vectors.safetensors: not a readable safetensors file"),
    "config not JSON": (lambda f: (f / "config.json").write_text('{"metric": "cos'),
                        "config.json: not valid JSON"),
    "config not UTF-8": (lambda f: (f / "config.json").write_bytes(b"\xff\xfe{"), "config.json: not valid JSON"),
    "config a list": (lambda f: (f / "config.json").write_text("[]"),
                      "config.json holds a list, not a GalleryIndex"),
    "no metric": (lambda f: _edit_config(f, metric=None), "config.json lacks metric"),
    "count a string": (lambda f: _edit_config(f, count="5"), "config.json: count must be a whole number, got '5'"),
    "no keys tensor": (lambda f: save_file({"vectors": torch.zeros(5, 8)}, str(f / "vectors.safetensors")),
                       "vectors.safetensors lacks keys"),
    "no vectors tensor": (lambda f: save_file({"keys": torch.arange(5)}, str(f / "vectors.safetensors")),
                          "vectors.safetensors lacks vectors"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_index_folder_is_named_in_one_line(folder, damage, capsys):
    spoil, said = DAMAGE[damage]
    spoil(folder)
    with pytest.raises(ValueError) as e:
        GalleryIndex.load(folder)
    assert said in str(e.value) and str(folder) in str(e.value)
    assert main(["retrieve", "search", str(folder), "--samples", "0", "--world", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal retrieve search: ") and said in err and err.count("\n") == 1


def test_an_intact_folder_still_loads(folder):
    index = GalleryIndex.load(folder)
    assert len(index) == 5 and index.dim == 8 and index.keys == list(range(5))
