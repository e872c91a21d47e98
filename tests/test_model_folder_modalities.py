"""A model folder records the definitions of its domains (config.json's ``_modalities``), so a model over
modalities that only its data registers (the world's ``tok_*@64``, a user's own) loads in a new process, where
nothing has registered them; before, ``FourM.from_pretrained(run/release)`` failed there with "unknown modality"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polymodal import modalities
from polymodal.config import ModelConfig
from polymodal.modalities import Kind, Modality
from polymodal.model import FourM
from polymodal.model.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
MINE = Modality("tok_mine@32", Kind.IMAGE_TOKENS, vocab_size=37, grid=(4, 4))


def _saved(tmp_path) -> Path:
    modalities.register(MINE, overwrite=True)
    cfg = ModelConfig(dim=32, encoder_depth=1, decoder_depth=1, num_heads=2, domains_in=("tok_mine@32", "caption"),
                      domains_out=("tok_mine@32", "caption"))
    torch.manual_seed(0)
    return FourM(cfg).save_pretrained(tmp_path / "release")


def _load_in_a_new_process(folder: Path) -> subprocess.CompletedProcess:
    code = ("import sys, torch; from polymodal.model import FourM; from polymodal import modalities\n"
            f"assert not modalities.is_registered('tok_mine@32')\n"
            f"m = FourM.from_pretrained({str(folder)!r}); print(m.config.modality('tok_mine@32').vocab_size)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_model_over_unregistered_modalities_loads_in_a_new_process(tmp_path):
    folder = _saved(tmp_path)
    assert json.loads((folder / "config.json").read_text())["_modalities"]["tok_mine@32"]["vocab_size"] == 37
    proc = _load_in_a_new_process(folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "37"


def test_the_shipped_model_folder_loads_alone():
    proc = subprocess.run([sys.executable, "-c", "from polymodal.model import FourM; m = FourM.from_pretrained("
                           "'src/polymodal/weights/default/model'); print(m.config.domains_out[0])"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "tok_canny_edge@64"


def test_another_definition_of_the_same_name_is_refused(tmp_path):
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["_modalities"]["tok_mine@32"]["vocab_size"] = 38
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"modality 'tok_mine@32' is registered with another definition here "
                                              r".* than config.json's"):
        FourM.from_pretrained(folder)
    cfg["_modalities"]["tok_mine@32"] = {"name": "tok_mine@32"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"modality 'tok_mine@32' has a bad definition in config.json "
                                              r"\(.*missing 1 required positional argument: 'kind'\)$"):
        FourM.from_pretrained(folder)
