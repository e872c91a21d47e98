"""The benchmark's reference-path model (benchmarks/ref_fourm.py) is the same model as polymodal's FourM: loaded
with the same weights, its logits at the reference fixture's target rows match the reference's own."""

from __future__ import annotations

import json

import pytest
import torch
from benchmarks.ref_fourm import RefFourM, mod_dict_from_batch, num_decoder_slots
from benchmarks.train_step import make_batch, model_config
from safetensors.torch import load_file

from polymodal.interop.ml4m import batch_from_mod_dict, load_checkpoint
from polymodal.model import FourM, masked_modeling_loss

from .conftest import fixtures_dir

TINY = "ml4m-4m21-tiny"


@pytest.fixture(scope="module")
def setup():
    case = load_file(str(fixtures_dir(TINY, "case.safetensors")))
    model = load_checkpoint(fixtures_dir(TINY)).eval()
    ref = RefFourM.from_polymodal(model).eval()
    domains = sorted({k.split(".")[0] for k in case if not k.startswith(("logits.", "valid.", "target_ids."))})
    mod_dict = {d: {k: case[f"{d}.{k}"] for k in ("tensor", "input_mask", "target_mask", "decoder_attention_mask")}
                for d in domains}
    info = json.loads(fixtures_dir(TINY, "case.json").read_text())
    return case, model, ref, mod_dict, info["num_encoder_tokens"]


def test_reference_path_matches_fixture_logits(setup):
    case, _, ref, mod_dict, n_enc = setup
    # A decoder budget with spare (padding) slots: they must not change the valid rows.
    n_dec = num_decoder_slots(mod_dict, ref.config) + 7
    out = ref.target_logits(mod_dict, n_enc, n_dec)
    expected = {k.split(".", 1)[1] for k in case if k.startswith("logits.")}
    assert set(out) == expected
    for name, logits in out.items():
        valid = case[f"valid.{name}"]
        want = case[f"logits.{name}"][valid]  # sample-major, ascending position: the reference's y[mod_mask == id]
        assert logits.shape == want.shape, name
        err = (logits - want).abs().max().item()
        assert err < 5e-5, f"{name}: max |logit error| {err:.2e}"


def test_reference_path_loss_equals_polymodal_loss(setup):
    """Same weights, same batch: the reference's 'mod' loss equals polymodal's modality-weighted loss when every
    output modality has targets, and the converted batch round-trips to the fixture's reference masks."""
    _, model, ref, mod_dict, n_enc = setup
    batch = batch_from_mod_dict(mod_dict, model)
    again = mod_dict_from_batch(batch, model.config)
    for name, d in mod_dict.items():
        for key in ("input_mask", "target_mask", "decoder_attention_mask"):
            assert torch.equal(again[name][key].int(), d[key].int()), (name, key)
    with torch.no_grad():
        loss_ref, _ = ref(again, n_enc, num_decoder_slots(again, model.config))
        loss_ours, _ = masked_modeling_loss(model(batch))
    assert abs(loss_ref.item() - loss_ours.item()) < 1e-5


def test_benchmark_batch_and_training_gradients_match():
    """The benchmark's batch fills both budgets exactly, and one training step's loss and gradients are the same
    through polymodal's path and the reference's (what the benchmark times is the same computation)."""
    cfg = model_config("test", max_vocab=300)
    batch = make_batch(cfg, 4, num_input=48, num_target=40, seed=1)
    assert sum(t.is_input.sum(1) for t in batch.values()).tolist() == [48] * 4
    assert sum(t.is_target.sum(1) for t in batch.values()).tolist() == [40] * 4
    torch.manual_seed(0)
    model = FourM(cfg, image_decoder_token_tables=True)
    ref = RefFourM.from_polymodal(model)
    loss_ours, per_mod = masked_modeling_loss(model(batch))
    assert len(per_mod) == len(cfg.domains_out)  # every output has targets: both losses average the same terms
    loss_ref, _ = ref(mod_dict_from_batch(batch, cfg), 48, 40)
    assert abs(loss_ours.item() - loss_ref.item()) < 1e-5
    loss_ours.backward()
    loss_ref.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        g_ref = ref_grads[name].grad
        if p.grad is None:
            assert g_ref is None or not g_ref.any(), name
            continue
        assert torch.allclose(p.grad, g_ref, atol=1e-6, rtol=1e-4), name
