"""LoRA through the training loop (issue 19): the frozen base stays bit-identical, checkpoints hold the adapters and
a stopped run resumes to the same adapters, the release holds the merged model and the adapters apart, and runs
written before the lora section existed still resume."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.config import ModelConfig
from polymodal.data import synthetic
from polymodal.model import FourM
from polymodal.model.adapters import fingerprint
from polymodal.train.checkpoint import CheckpointManager
from polymodal.train.loop import train
from polymodal.train.objectives import make_objective

from ..conftest import TINY_MODS
from .helpers import BASE, RECIPE, assert_same_weights, release_weights, tiny_experiment

# dropout > 0: its draws come from the checkpointed random state, so resuming stays exact with it.
LORA = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "train.steps=4", "train.save_every=2")


def _adapters(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "release" / "adapters" / "adapters.safetensors"))


def test_lora_run_trains_only_adapters_and_resumes_exactly(tmp_path):
    cfg = tiny_experiment(tmp_path / "a", *LORA)
    train(cfg)
    train(tiny_experiment(tmp_path / "b", *LORA, "train.stop_at=2"))
    train(tiny_experiment(tmp_path / "b", *LORA))
    a, b = tmp_path / "a", tmp_path / "b"
    assert_same_weights(_adapters(a), _adapters(b))
    assert_same_weights(release_weights(a), release_weights(b))
    ckpt = load_file(str(CheckpointManager(b).latest() / "model.safetensors"))
    assert set(_adapters(b)) <= set(ckpt)  # the checkpoint holds the adapters: what the resume read
    as_model = FourM.from_pretrained(CheckpointManager(b).latest()).state_dict()  # reads as the merged model
    assert_same_weights(as_model, FourM.from_pretrained(b / "release").state_dict())
    # The frozen base is bit-identical to the model the loop built: same fingerprint as a fresh one.
    torch.manual_seed(cfg.train.seed)
    fresh = make_objective(cfg).build_model()
    info = json.loads((a / "release" / "adapters" / "adapter_config.json").read_text())
    assert info["base_fingerprint"] == fingerprint(dict(fresh.named_parameters(remove_duplicate=False)))
    # The release is that base with the adapters merged; the adapters load onto it (in place).
    base = {k: v.clone() for k, v in fresh.state_dict().items()}
    merged = fresh.load_adapters(a / "release" / "adapters", merge=True).state_dict()
    release = FourM.from_pretrained(a / "release").state_dict()
    changed = 0
    for k, v in release.items():
        torch.testing.assert_close(merged[k], v, rtol=0, atol=1e-6)
        changed += not torch.equal(v, base[k])
    assert changed > 0 and all(k.endswith((".lora_A", ".lora_B")) for k in _adapters(a))


def test_a_run_from_before_the_lora_section_resumes_and_refuses_lora_by_name(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_experiment(run, "train.steps=4", "train.save_every=2", "train.stop_at=2"))
    for cfg_file in (CheckpointManager(run).latest() / "config.json",):
        saved = json.loads(cfg_file.read_text())
        del saved["lora"]
        cfg_file.write_text(json.dumps(saved))
    args = ["train", str(RECIPE), f"train.out_dir={run}", *BASE, "train.steps=4", "train.save_every=2"]
    assert main([*args, "lora.r=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal train: ") and err.count("\n") == 1 and 'lora.r: "(absent)" -> 2' in err
    assert train(tiny_experiment(run, "train.steps=4", "train.save_every=2")).steps == 4


def test_a_lora_train_prefix_naming_nothing_is_refused(tmp_path, capsys):
    args = ["train", str(RECIPE), f"train.out_dir={tmp_path / 'r'}", *BASE, "lora.r=2", 'lora.train=["heads.x"]']
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal train: lora.train: 'heads.x' names no parameter of this model; parameter names "
                          "start with decoder, decoder_embeddings, decoder_norm, decoder_proj_context, ")
    assert err.count("\n") == 1 and not (tmp_path / "r" / "config.json").exists()


def test_lora_from_starting_weights_trains_the_added_head_and_loads_back_onto_that_base(tmp_path):
    # The start lacks the recipe's labels@syn head (added: it trains beside the adapters) and has tok_a@test (dropped).
    extra = TINY_MODS[1].name
    torch.manual_seed(123)
    src = FourM(ModelConfig.preset("test", domains_in=(*synthetic.MODALITIES, extra),
                                   domains_out=("tok_shape@syn", "tok_depth@syn", extra)))
    src.save_pretrained(tmp_path / "src")
    run = tmp_path / "run"
    train(tiny_experiment(run, f"finetune.init_from={tmp_path / 'src'}", "lora.r=4", "train.steps=2"))
    info = json.loads((run / "release" / "adapters" / "adapter_config.json").read_text())
    assert info["base"] == str(tmp_path / "src") and info["extra"]
    assert all(n.startswith("decoder_embeddings.labels@syn.") for n in info["extra"])
    loaded = FourM.from_pretrained(tmp_path / "src").load_adapters(run / "release" / "adapters", merge=True)
    release = FourM.from_pretrained(run / "release")
    assert loaded.config == release.config
    for k, v in release.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=1e-6)
    # What LoRA does not wrap and the run did not add is the start's, bit for bit.
    wrapped = {k[: -len(".lora_A")] + ".weight" for k in _adapters(run) if k.endswith(".lora_A")}
    kept = [k for k in release.state_dict() if k in src.state_dict() and k not in wrapped]
    assert kept and all(torch.equal(release.state_dict()[k], src.state_dict()[k]) for k in kept)
