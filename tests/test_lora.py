"""LoRA (issue 19): the adapted layer against a hand-written LoRA, zero-initialized adapters change nothing, merged
equals unmerged, only the adapters (and the named new parts) train, adapter folders round-trip and are refused on
another base, and the adapter file of the shipped default model at r = 8."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors import safe_open

from polymodal.cli import main
from polymodal.config import ConfigError, LoRAConfig, ModelConfig, OptimConfig
from polymodal.model import FourM
from polymodal.model.adapters import AdapterError, fingerprint, load_adapters, save_model_adapters
from polymodal.nn import CrossAttention, Mlp, SelfAttention
from polymodal.nn.lora import LORA_TARGETS, LoRALinear, add_lora, apply_lora, lora_names, merge_lora, merged_state_dict
from polymodal.pipeline import Pipeline
from polymodal.train.optim import build_optimizer

from .conftest import TINY_IN, TINY_OUT, random_batch, tiny_config
from .shipped import shipped_registry

shipped = pytest.fixture(shipped_registry)


def _model(seed: int = 0, **overrides) -> FourM:
    torch.manual_seed(seed)
    return FourM(tiny_config(**overrides)).eval()


def _logits(model: FourM, seed: int = 1) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: v.logits for k, v in model(random_batch(3, seed=seed)).items()}


def _randomize_adapters(model: torch.nn.Module, seed: int = 5) -> None:
    """Non-zero B (a fresh adapter's B is zero, which would hide a wrong merge)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


def test_lora_linear_is_the_hand_written_lora():
    g = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(6, 5)
    lin = LoRALinear(base, r=4, alpha=2.0)  # scale 0.5: tells alpha / r from alpha, r and r / alpha
    with torch.no_grad():
        lin.lora_B.copy_(torch.randn(5, 4, generator=g))
    x = torch.randn(2, 3, 6, generator=g)
    expect = x @ base.weight.T + base.bias + 0.5 * (x @ lin.lora_A.T @ lin.lora_B.T)
    torch.testing.assert_close(lin(x), expect, rtol=0, atol=1e-6)
    assert lin.weight is base.weight and lin.bias is base.bias  # shared, not copied
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias", "lora_A", "lora_B"]
    torch.testing.assert_close(lin.merged()(x), expect, rtol=0, atol=1e-5)


def test_config_targets_are_the_layers_targets_and_bad_values_are_one_line():
    assert LoRAConfig().targets == LORA_TARGETS
    with pytest.raises(ConfigError, match=r"^lora\.targets: got \('qkv', 'fc9'\), expected a list of one of 'qkv'"):
        LoRAConfig(r=8, targets=("qkv", "fc9"))
    with pytest.raises(ConfigError, match=r"^lora\.r: got -1, expected an integer >= 0$"):
        LoRAConfig(r=-1)


def test_adapters_wrap_attention_and_mlp_projections_only():
    model = _model()
    add_lora(model, r=2, alpha=2.0)
    wrapped = {n for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    expect = set()
    for name, m in model.named_modules():
        if isinstance(m, SelfAttention):
            expect |= {f"{name}.qkv", f"{name}.proj"}
        elif isinstance(m, CrossAttention):
            expect |= {f"{name}.q", f"{name}.kv", f"{name}.proj"}
        elif isinstance(m, Mlp):
            expect |= {f"{name}.fc1", f"{name}.fc2", f"{name}.fc3"}
    assert wrapped == expect
    # 2 encoder blocks x 5 + 2 decoder blocks x 8: not the pixel embedding's `proj`, not decoder_proj_context.
    assert len(wrapped) == 26 and "encoder_embeddings.rgb@test.proj" not in wrapped
    assert "decoder_proj_context" not in wrapped


def test_zero_initialized_adapters_leave_the_outputs_of_the_base():
    model = _model()
    before = _logits(model)
    add_lora(model, r=4, alpha=8.0)
    after = _logits(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_merged_equals_unmerged_and_has_the_base_layout():
    model = _model()
    base_keys = list(model.state_dict())
    add_lora(model, r=4, alpha=8.0)
    _randomize_adapters(model)
    unmerged = _logits(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    base = _logits(_model())
    assert all((unmerged[k] - base[k]).abs().max() > 1e-3 for k in base)  # the adapters do change the outputs
    merge_lora(model)
    merged = _logits(model)
    for k in unmerged:
        torch.testing.assert_close(merged[k], unmerged[k], rtol=0, atol=1e-5)
    assert list(model.state_dict()) == base_keys
    from_state = merged_state_dict(state, 8.0 / 4)
    assert all(torch.equal(from_state[k], v) for k, v in model.state_dict().items())


def test_only_adapters_and_named_new_parts_train_base_stays_bit_identical():
    model = _model().train()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    new = "decoder_embeddings.seq@test"
    trainable = apply_lora(model, LoRAConfig(r=4, alpha=8.0, dropout=0.1), also_train=[new])
    assert set(trainable) == set(lora_names(model)) | {n for n, _ in model.named_parameters() if n.startswith(new)}
    opt = build_optimizer(model, OptimConfig(base_lr=0.5, weight_decay=0.05), 256)
    for step in range(3):
        out = model(random_batch(3, seed=step))
        loss = sum(torch.nn.functional.cross_entropy(o.logits, o.target_ids) for o in out.values())
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    changed = {k for k in base if not torch.equal(base[k], after[k])}
    assert changed and all(k.startswith(new) for k in changed)  # frozen: bit-identical, weight decay included
    assert all(not torch.equal(after[k], torch.zeros_like(after[k])) for k in after if k.endswith("lora_B"))


def test_a_prefix_that_names_nothing_is_refused_with_the_names():
    with pytest.raises(ValueError, match=r"^lora\.train: 'decoder_embeddings\.nope' names no parameter of this "
                                         r"model; parameter names start with decoder, decoder_embeddings, "):
        apply_lora(_model(), LoRAConfig(r=2, train=("decoder_embeddings.nope",)))


def _trained(tmp_path, seed: int = 0):
    model = _model(seed)
    apply_lora(model, LoRAConfig(r=4, alpha=8.0))
    _randomize_adapters(model)
    folder = save_model_adapters(model, tmp_path / "adapters", lora=LoRAConfig(r=4, alpha=8.0), base="tiny seed 0")
    return model, folder


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A base's weights as the fingerprint takes them: every parameter under each of its names, no buffers."""
    return dict(model.named_parameters(remove_duplicate=False))


def test_fingerprint_follows_its_documented_definition():
    model = _model()
    weights = _weights(model)
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach()
        t = t.float() if t.is_floating_point() else t
        h.update(f"{name}\0{tuple(t.shape)}\0".encode() + hashlib.sha256(t.contiguous().numpy().tobytes()).digest())
    assert fingerprint(weights) == h.hexdigest()
    # The values count, and a float16 copy of float16-representable values is the same base.
    sd = dict(model.state_dict())
    sd["mask_token"] = sd["mask_token"] + 1e-3
    assert fingerprint(sd) != h.hexdigest()
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert fingerprint(half) == fingerprint({k: v.float() if v.is_floating_point() else v for k, v in half.items()})


def test_save_load_round_trip_gives_the_trained_outputs(tmp_path):
    model, folder = _trained(tmp_path)
    with safe_open(str(folder / "adapters.safetensors"), "pt") as f:
        assert set(f.keys()) == set(lora_names(model))  # the adapters only, not the base
    info = json.loads((folder / "adapter_config.json").read_text())
    assert (info["r"], info["alpha"], info["targets"], info["base"]) == (4, 8.0, list(LORA_TARGETS), "tiny seed 0")
    loaded = load_adapters(_model(0), folder)
    expect = _logits(model)
    got = _logits(loaded)
    assert all(torch.equal(expect[k], got[k]) for k in expect)
    merged = _model(0).load_adapters(folder, merge=True)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    for k, v in _logits(merged).items():
        torch.testing.assert_close(v, expect[k], rtol=0, atol=1e-5)


def test_adapters_on_another_base_are_refused_naming_both(tmp_path):
    _, folder = _trained(tmp_path)
    other = _model(1)
    ours, theirs = fingerprint(_weights(_model(0))), fingerprint(_weights(other))
    with pytest.raises(AdapterError) as e:
        load_adapters(other, folder)
    assert str(e.value) == (f"{folder}: adapters trained on base sha256:{ours[:16]} (tiny seed 0); this model is "
                            f"sha256:{theirs[:16]}: load them onto the model they were trained on")
    assert not any(isinstance(m, LoRALinear) for m in other.modules())  # nothing half done


def test_adapters_that_add_a_modality_rebuild_the_trained_model(tmp_path):
    base = FourM(ModelConfig.preset("test", domains_in=TINY_IN, domains_out=TINY_OUT[:2])).eval()
    torch.manual_seed(3)
    trained = FourM(tiny_config()).eval()  # + the output seq@test, fresh; the rest loaded from the base
    trained.load_state_dict(base.state_dict(), strict=False)
    new = "decoder_embeddings.seq@test"
    lora = LoRAConfig(r=2, alpha=2.0, train=(new,))
    apply_lora(trained, lora)
    _randomize_adapters(trained)
    folder = save_model_adapters(trained, tmp_path / "a", lora=lora)
    loaded = base.load_adapters(folder)
    assert loaded is not base and loaded.config.domains_out == TINY_OUT
    expect, got = _logits(trained), _logits(loaded)
    assert set(got) == set(TINY_OUT) and all(torch.equal(expect[k], got[k]) for k in expect)


def test_a_tied_table_trains_when_any_of_its_names_is_named():
    model = _model(tie_sequence_tables=True)
    trainable = apply_lora(model, LoRAConfig(r=2, train=("decoder_embeddings.seq@test",)))
    table = model.decoder_embeddings["seq@test"].to_logits.weight
    assert table is model.encoder_embeddings["seq@test"].token_emb.weight and table.requires_grad
    assert "encoder_embeddings.seq@test.token_emb.weight" in trainable


def test_the_default_models_adapter_file_at_r8(shipped, tmp_path):
    model = Pipeline.from_pretrained(shipped).model
    apply_lora(model, LoRAConfig(r=8))
    c = model.config
    d, h = c.dim, c.mlp_hidden
    enc = (d + 3 * d) + (d + d) + 3 * (d + h)  # r x (in + out) per layer: qkv, proj, fc1, fc2, fc3
    dec = enc + (d + d) + (d + 2 * d) + (d + d)  # and cross-attention's q, kv, proj
    per_rank = c.encoder_depth * enc + c.decoder_depth * dec
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 8 * per_rank
    folder = save_model_adapters(model, tmp_path / "adapters", lora=LoRAConfig(r=8))
    size = (folder / "adapters.safetensors").stat().st_size
    assert 4 * 8 * per_rank < size < 4 * 8 * per_rank + 16_384  # float32 values and the header
    assert size < (shipped / "model" / "model.safetensors").stat().st_size / 10


def test_pipeline_merges_adapters_and_generate_refuses_another_bases(shipped, tmp_path, capsys):
    model = Pipeline.from_pretrained(shipped).model
    apply_lora(model, LoRAConfig(r=2))
    _randomize_adapters(model)
    folder = save_model_adapters(model, tmp_path / "adapters", lora=LoRAConfig(r=2), base="shipped")
    expect = merge_lora(model).state_dict()
    got = Pipeline.from_pretrained(shipped, adapters=folder).model.state_dict()
    assert set(got) == set(expect) and all(torch.equal(got[k], v) for k, v in expect.items())
    _, tiny = _trained(tmp_path)
    out = tmp_path / "out"
    code = main(["generate", "--model", str(shipped), "--adapters", str(tiny), "--from", "caption=a red cube",
                 "--to", "depth", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith(f"polymodal generate: {tiny}: adapters trained on base sha256:")
    assert "(tiny seed 0); this model is sha256:" in err
