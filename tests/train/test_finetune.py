"""Fine-tuning from trained weights (`train.finetune`): added and dropped domains, mismatches, reinit, frozen groups,
the loaded parameters' learning rate, exact resume, an official 4M folder as the start."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.config import ConfigError, ModelConfig, apply_overrides
from polymodal.data import synthetic
from polymodal.model import FourM
from polymodal.train import finetune as ft_mod
from polymodal.train.finetune import InitMismatch, load_init, prepare
from polymodal.train.loop import CheckpointMismatch, train
from polymodal.train.optim import build_optimizer, set_lr

from ..conftest import FIXTURES, fixtures_missing
from ..data.helpers import GRID  # registers tok_a@data
from .helpers import BASE, RECIPE, assert_same_weights, release_weights, tiny_experiment

SYN = synthetic.MODALITIES  # tok_shape@syn, tok_depth@syn, labels@syn: the tiny recipe's domains, in and out
# The starting weights: labels@syn only as an input (the recipe adds its head), and tok_a@test (from the test
# modalities of conftest) that the recipe drops.
SRC_IN, SRC_OUT = (*SYN, "tok_a@test"), ("tok_shape@syn", "tok_depth@syn", "tok_a@test")
NEW_PREFIX = "decoder_embeddings.labels@syn."
DEFAULT_MODEL = RECIPE.parents[1] / "src" / "polymodal" / "weights" / "default"


def _source(path, *, seed: int = 123, **overrides) -> FourM:
    torch.manual_seed(seed)  # not the run's seed: loaded tensors differ from the recipe's fresh ones
    model = FourM(ModelConfig.preset("test", domains_in=SRC_IN, domains_out=SRC_OUT, **overrides))
    model.save_pretrained(path)
    return model


def _fresh_and_prepared(cfg, **kw):
    torch.manual_seed(cfg.train.seed)
    fresh = FourM(cfg.model)
    torch.manual_seed(cfg.train.seed)
    model = FourM(cfg.model)
    return fresh, model, prepare(model, cfg, load=True, **kw)


def test_added_domain_starts_fresh_dropped_is_ignored_the_rest_is_the_checkpoint(tmp_path):
    src = _source(tmp_path / "src")
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}")
    fresh, model, ft = _fresh_and_prepared(cfg)
    theirs, fresh_sd = src.state_dict(), fresh.state_dict()
    for name, t in model.state_dict().items():
        expected = fresh_sd[name] if name.startswith(NEW_PREFIX) else theirs[name]
        assert torch.equal(t, expected), name
    assert ft.plan.fresh == {n for n in fresh_sd if n.startswith(NEW_PREFIX)}
    assert ft.plan.ignored == {n for n in theirs if ".tok_a@test." in n}
    # The table: per-group counts add up to the model's, and the new domain is named.
    total = next(line for line in ft.table.splitlines() if line.startswith("total")).split()
    new_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(NEW_PREFIX))
    assert [int(x.replace(",", "")) for x in total[2:5]] == [model.num_params(), model.num_params() - new_params,
                                                          new_params]
    assert "new: heads.labels@syn (" in ft.table and "ignored (not in the recipe): embeddings.tok_a@test (" in ft.table


def test_a_bundle_loads_through_its_model_folder(tmp_path):
    _source(tmp_path / "bundle" / "model")
    (tmp_path / "bundle" / "pipeline.json").write_text(json.dumps({"format": "polymodal-pipeline", "version": 1,
                                                                    "model": "model"}))
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'bundle'}")
    _, model, ft = _fresh_and_prepared(cfg)
    assert ft.plan.kind == "bundle" and ft.plan.source == tmp_path / "bundle" / "model"
    assert torch.equal(model.encoder[0].attn.qkv.weight,
                       FourM.from_pretrained(tmp_path / "bundle" / "model").encoder[0].attn.qkv.weight)


def test_a_training_checkpoint_loads_and_a_run_folder_is_named_as_such(tmp_path):
    first = train(tiny_experiment(tmp_path / "first", "train.steps=4"))
    step = first.run_dir / "checkpoints" / "step_00000004"
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={step}", "train.seed=9")
    _, model, ft = _fresh_and_prepared(cfg)
    assert ft.plan.kind == "training checkpoint" and not ft.plan.fresh and not ft.plan.ignored
    released = release_weights(first.run_dir)
    computed = {n: t for n, t in model.state_dict().items() if n not in released}  # sin-cos tables: left out
    assert computed and all(n.endswith(".pos_emb") for n in computed)
    assert_same_weights(model.state_dict(), released | computed)
    with pytest.raises(InitMismatch) as e:
        _fresh_and_prepared(tiny_experiment(tmp_path / "run", f"finetune.init_from={first.run_dir}"))
    assert str(e.value) == (f"finetune.init_from: {first.run_dir} is a run folder; name its release/ or one of its "
                            "checkpoints/step_N folders")


def test_other_vocabulary_is_one_line_per_tensor_with_both_shapes_unless_reinit(tmp_path):
    src = _source(tmp_path / "src", vocab_sizes={"tok_shape@syn": 40, "labels@syn": 250})
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}")
    with pytest.raises(InitMismatch) as e:
        _fresh_and_prepared(cfg)
    assert str(e.value) == (
        f"finetune.init_from {tmp_path / 'src'} does not fit the recipe's model (list a domain under finetune.reinit "
        "to start it fresh):\n"
        "  tok_shape@syn: encoder_embeddings.tok_shape@syn.token_emb.weight is (40, 64) in the starting weights, "
        "(36, 64) in the model\n"
        "  labels@syn: encoder_embeddings.labels@syn.token_emb.weight is (250, 64) in the starting weights, "
        "(213, 64) in the model\n"
        "  tok_shape@syn: decoder_embeddings.tok_shape@syn.to_logits.weight is (40, 64) in the starting weights, "
        "(36, 64) in the model")
    # The command line: exit code 2, the message after "polymodal train: ".
    assert main(["train", str(RECIPE), f"train.out_dir={tmp_path / 'cli'}", *BASE,
                 f"finetune.init_from={tmp_path / 'src'}"]) == 2
    # Listed under reinit, both domains start fresh (every tensor of theirs, also the ones that fit).
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}",
                          'finetune.reinit=["tok_shape@syn", "labels@syn"]')
    fresh, model, ft = _fresh_and_prepared(cfg)
    again = {n for n in model.state_dict() if ".tok_shape@syn." in n or ".labels@syn." in n}
    assert ft.plan.fresh == again
    for name, t in model.state_dict().items():
        assert torch.equal(t, fresh.state_dict()[name] if name in again else src.state_dict()[name]), name
    assert ("reinitialized: embeddings.labels@syn (3 tensors), embeddings.tok_shape@syn (3 tensors), "
            "heads.labels@syn") in ft.table


def test_another_architecture_names_each_field(tmp_path):
    _source(tmp_path / "src", dim=32, num_heads=2)
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}")
    with pytest.raises(InitMismatch) as e:
        _fresh_and_prepared(cfg)
    assert str(e.value).splitlines()[1:] == ["  model.dim: 32 in the starting weights, 64 in the recipe",
                                             "  model.num_heads: 2 in the starting weights, 4 in the recipe"]
    # Tied tables in the recipe, separate ones in the weights: refused; the other way round they load.
    _source(tmp_path / "src")
    with pytest.raises(InitMismatch, match="model.tie_sequence_tables: False in the starting weights, True in"):
        _fresh_and_prepared(tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}",
                                            "model.tie_sequence_tables=true"))
    _source(tmp_path / "src", tie_sequence_tables=True, share_modality_embeddings=True)
    _, model, ft = _fresh_and_prepared(cfg)
    enc, dec = model.encoder_embeddings["tok_depth@syn"], model.decoder_embeddings["tok_depth@syn"]
    assert enc.mod_emb is not dec.mod_emb and torch.equal(enc.mod_emb, dec.mod_emb)  # the weights' one, twice


def test_bad_starting_weights_and_fields_are_one_line(tmp_path):
    for init_from, words in ((tmp_path / "nowhere", "no such folder"), (tmp_path, "no model.safetensors")):
        cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={init_from}")
        with pytest.raises(InitMismatch, match=words) as e:
            _fresh_and_prepared(cfg)
        assert "\n" not in str(e.value) and str(e.value).startswith("finetune.init_from")
    with pytest.raises(ConfigError, match="finetune.reinit needs finetune.init_from"):
        _fresh_and_prepared(tiny_experiment(tmp_path / "run", 'finetune.reinit=["labels@syn"]'))
    with pytest.raises(ConfigError, match=r"finetune.reinit: 'caption' is not a domain of the model \(domains: "):
        tiny_experiment(tmp_path / "run", "finetune.init_from=x", 'finetune.reinit=["caption"]')
    from polymodal.cli import load_recipe

    tokenizer = load_recipe(str(RECIPE.parent / "tokenizer_edges_world64.py"))
    with pytest.raises(ConfigError) as e:
        apply_overrides(tokenizer, ['finetune.freeze=["encoder"]'])
    assert str(e.value) == "finetune applies to 4M models (objective 'fourm'), not to objective 'tokenizer'"


def test_unknown_group_lists_the_groups(tmp_path):
    with pytest.raises(ConfigError) as e:
        tiny_experiment(tmp_path / "run", 'finetune.freeze=["encoders"]')
    assert str(e.value) == (
        "finetune.freeze: no parameter group 'encoders' (did you mean encoder?); the groups are: embeddings, encoder, "
        "decoder, heads, embeddings.tok_shape@syn, embeddings.tok_depth@syn, embeddings.labels@syn, "
        "heads.tok_shape@syn, heads.tok_depth@syn, heads.labels@syn")


def test_every_parameter_is_in_exactly_one_group():
    for cfg in (ModelConfig.preset("test", domains_in=SRC_IN, domains_out=SRC_OUT),
                ModelConfig.preset("test", domains_in=SYN, domains_out=SYN, tie_sequence_tables=True,
                                   share_modality_embeddings=True)):
        names = [n for n, _ in FourM(cfg).named_parameters(remove_duplicate=False)]
        tops = {n: ft_mod.group_of(n)[0] for n in names}
        assert set(tops.values()) == {"embeddings", "encoder", "decoder", "heads"}
        assert tops["mask_token"] == "decoder" and tops["decoder_proj_context.weight"] == "decoder"
        assert tops["encoder_norm.weight"] == "encoder"


def test_frozen_groups_stay_bit_identical_and_get_no_optimizer_state(tmp_path):
    src = _source(tmp_path / "src")
    frozen_prefixes = ("encoder.", "encoder_norm.", "encoder_embeddings.tok_shape@syn.")
    run = train(tiny_experiment(tmp_path / "run", "train.steps=4", f"finetune.init_from={tmp_path / 'src'}",
                                'finetune.freeze=["encoder", "embeddings.tok_shape@syn"]'))
    after, before = release_weights(run.run_dir), src.state_dict()
    frozen = [n for n in after if n.startswith(frozen_prefixes)]
    assert len(frozen) > 5 and all(torch.equal(after[n], before[n]) for n in frozen)
    moved = [n for n in after if n.startswith("decoder.") and not torch.equal(after[n], before[n])]
    assert moved  # the rest trains
    state = load_file(str(run.run_dir / "checkpoints" / "step_00000004" / "optimizer.safetensors"))
    with_state = {k.split("::")[0] for k in state if "::" in k}
    assert with_state and not any(k.startswith(frozen_prefixes) for k in with_state)
    assert any(k.startswith("decoder.") for k in with_state)


def test_loaded_parameters_take_the_scaled_learning_rate(tmp_path):
    _source(tmp_path / "src")
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}", "finetune.loaded_lr_scale=0.1")
    _, model, ft = _fresh_and_prepared(cfg)
    opt = build_optimizer(model, cfg.optim, cfg.train.batch_size, lr_scales=ft.lr_scale)
    set_lr(opt, 0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr: dict[float, set[str]] = {}
    for g in opt.param_groups:
        by_lr.setdefault(g["lr"], set()).update(names[id(p)] for p in g["params"])
    assert sorted(by_lr) == [0.5 * 0.1, 0.5]
    assert by_lr[0.5] == {n for n in names.values() if n.startswith(NEW_PREFIX)}
    assert by_lr[0.5 * 0.1] == {n for n in names.values() if not n.startswith(NEW_PREFIX)}
    assert len(opt.param_groups) == 4  # decayed and not, new and loaded


def test_resume_ends_with_the_weights_of_a_straight_run_and_reads_its_own_checkpoint(tmp_path, monkeypatch):
    _source(tmp_path / "src")
    args = (f"finetune.init_from={tmp_path / 'src'}", 'finetune.freeze=["heads.tok_depth@syn"]',
            "finetune.loaded_lr_scale=0.25")
    straight = train(tiny_experiment(tmp_path / "straight", *args))
    paused = train(tiny_experiment(tmp_path / "paused", *args, "train.stop_at=4"))
    assert paused.steps == 4
    # Other weights of the same shapes at init_from now: a resume that re-applied them would end elsewhere.
    _source(tmp_path / "src", seed=7)
    copies = []
    monkeypatch.setattr(ft_mod, "apply_plan", lambda *a: copies.append(a))
    train(tiny_experiment(tmp_path / "paused", *args))
    assert copies == []
    assert_same_weights(release_weights(straight.run_dir), release_weights(tmp_path / "paused"))
    # And init_from may not change on resume.
    with pytest.raises(CheckpointMismatch, match="finetune.loaded_lr_scale: 0.25 -> 0.5"):
        train(tiny_experiment(tmp_path / "paused", *args[:2], "finetune.loaded_lr_scale=0.5", "train.steps=16"))


def test_an_official_4m21_folder_starts_a_run_with_a_domain_dropped_and_one_added():
    folder = FIXTURES / "ml4m-4m21-tiny"
    if not folder.exists():
        fixtures_missing(folder)
    source = FourM.from_pretrained(folder)
    outs = tuple(d for d in source.config.domains_out if d != "det") + ("tok_normal@224",)
    model = FourM(dataclasses.replace(source.config, domains_out=outs))
    plan = load_init(model, str(folder))
    assert plan.kind == "official 4M folder"
    assert plan.fresh == {n for n in model.state_dict() if n.startswith("decoder_embeddings.tok_normal@224.")}
    # Ignored: the dropped output, and the decoder token tables of image targets that official files hold unused.
    unused = {f"decoder_embeddings.{d}.token_emb.weight" for d in ("tok_rgb@224", "tok_depth@224", "tok_dinov2_global")}
    assert plan.ignored == {n for n in source.state_dict() if n.startswith("decoder_embeddings.det.")} | unused
    # The reference's own logits on its fixture batch (det's targets left out): the loaded model reproduces them.
    case = load_file(str(folder / "case.safetensors"))
    from polymodal.interop.ml4m import forward_logits

    domains = sorted({k.split(".")[0] for k in case if not k.startswith(("logits.", "valid.", "target_ids."))})
    mod_dict = {d: {k: case[f"{d}.{k}"] for k in ("tensor", "input_mask", "target_mask", "decoder_attention_mask")}
                for d in domains}
    mod_dict["det"]["target_mask"] = torch.ones_like(mod_dict["det"]["target_mask"], dtype=torch.bool)
    with torch.no_grad():
        out = forward_logits(model.eval(), mod_dict)
    checked = 0
    for name, (logits, valid) in out.items():
        want = case[f"logits.{name}"]
        assert torch.allclose(logits[valid], want[case[f"valid.{name}"]], atol=5e-5), name
        checked += 1
    assert checked >= 3


def _default_like_tokens(path, new: str) -> ModelConfig:
    """A token dataset over the shipped default model's domains (its vocabularies) plus ``new``; returns the
    default model's config."""
    import numpy as np

    from polymodal import modalities
    from polymodal.data.pretokenize import write_tokens

    default = ft_mod.source_config(str(DEFAULT_MODEL))  # registers the bundle's tok_*@64 modalities
    mods = {n: default.modality(n) for n in dict.fromkeys(default.domains_in + default.domains_out)}
    mods[new] = modalities.get(new)
    rng = np.random.default_rng(0)

    def sample(i):
        out = {"__key__": f"{i:06d}"}
        for n, m in mods.items():
            out[n] = (rng.integers(0, m.vocab_size, (1, m.num_tokens)) if m.is_grid else
                      np.array([[*rng.integers(204, m.vocab_size, 5), 3]]))
        return out

    write_tokens(path, (sample(i) for i in range(4)), mods, shard_size=4)
    return default


def test_the_recipe_adds_one_modality_to_the_shipped_default_model(tmp_path, monkeypatch):
    from polymodal.cli import load_recipe

    default = _default_like_tokens(tmp_path / "tokens", GRID.name)
    monkeypatch.setenv("POLYMODAL_TOKENS", str(tmp_path / "tokens"))
    monkeypatch.setenv("POLYMODAL_NEW_MODALITY", "tok_a@data")
    recipe = str(RECIPE.parent / "finetune_world64.py")
    cfg = load_recipe(recipe)
    assert cfg.finetune.init_from == str(DEFAULT_MODEL) and cfg.finetune.loaded_lr_scale == 0.1
    assert cfg.model.domains_in == default.domains_in
    assert cfg.model.domains_out == (*default.domains_out, "tok_a@data")
    assert cfg.masking.input_alphas == {"tok_a@data": 0.0}  # an output only: never given
    torch.manual_seed(0)
    model = FourM(cfg.model)
    ft = prepare(model, cfg, load=True)  # the shipped weights fit the recipe: only the new head starts fresh
    assert ft.plan.kind == "bundle" and ft.plan.ignored == set()
    assert ft.plan.fresh == {n for n in model.state_dict() if n.startswith("decoder_embeddings.tok_a@data.")}
    monkeypatch.setenv("POLYMODAL_NEW_ROLE", "in")  # a new input, given and never predicted
    cfg = load_recipe(recipe)
    assert (cfg.model.domains_in, cfg.model.domains_out) == ((*default.domains_in, "tok_a@data"), default.domains_out)
    assert cfg.masking.target_alphas == {"tok_a@data": 0.0} and cfg.masking.input_alphas == {}
    monkeypatch.setenv("POLYMODAL_NEW_ROLE", "sideways")
    with pytest.raises(SystemExit, match="POLYMODAL_NEW_ROLE: 'sideways' is not one of out, in, both"):
        load_recipe(recipe)
    monkeypatch.setenv("POLYMODAL_NEW_ROLE", "out")
    monkeypatch.setenv("POLYMODAL_NEW_MODALITY", "tok_b@data")
    with pytest.raises(SystemExit, match="POLYMODAL_NEW_MODALITY: 'tok_b@data' is not in the token dataset"):
        load_recipe(recipe)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_fine_tune_as_one(tmp_path, mode):
    """Frozen groups and the loaded parameters' rate under DDP and FSDP2 (which replaces the parameter objects)."""
    from .test_multiprocess import _torchrun

    torch.manual_seed(5)  # modalities a fresh interpreter knows (no conftest): labels@syn's head is added
    FourM(ModelConfig.preset("test", domains_in=SYN, domains_out=SYN[:2])).save_pretrained(tmp_path / "src")
    args = (f"finetune.init_from={tmp_path / 'src'}", 'finetune.freeze=["encoder"]', "finetune.loaded_lr_scale=0.2",
            "train.steps=6")
    _torchrun(1, tmp_path / "one", *args)
    _torchrun(2, tmp_path / "two", *args, f"train.parallel={mode}")
    one, two = release_weights(tmp_path / "one"), release_weights(tmp_path / "two")
    assert_same_weights(one, two, atol=2e-5)
    src = load_file(str(tmp_path / "src" / "model.safetensors"))
    assert all(torch.equal(two[n], src[n]) for n in two if n.startswith("encoder."))
    # Without the scale the run ends far from there (more than the tolerance above): the scale reached FSDP's groups.
    plain = release_weights(train(tiny_experiment(tmp_path / "plain", *args[:2], "train.steps=6")).run_dir)
    assert (plain["decoder.0.mlp.fc1.weight"] - two["decoder.0.mlp.fc1.weight"]).abs().max() > 1e-3


def test_a_tied_table_loads_through_any_of_its_names(tmp_path):
    """A new text domain on a tied table: its embedding and head share the loaded table (not fresh, scaled)."""
    kw = dict(tie_sequence_tables=True, vocab_sizes={"labels@syn": 40})
    torch.manual_seed(3)
    src = FourM(ModelConfig.preset("test", domains_in=("tok_shape@syn", "labels@syn"), domains_out=("tok_shape@syn",),
                                   **kw))
    src.save_pretrained(tmp_path / "src")
    cfg = tiny_experiment(tmp_path / "run", f"finetune.init_from={tmp_path / 'src'}", "finetune.loaded_lr_scale=0.5")
    model_cfg = ModelConfig.preset("test", domains_in=("tok_shape@syn", "labels@syn", "seq@test"),
                                   domains_out=("tok_shape@syn", "seq@test"), **kw)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    torch.manual_seed(0)
    model = FourM(model_cfg)
    ft = prepare(model, cfg, load=True)
    table = "encoder_embeddings.labels@syn.token_emb.weight"
    assert torch.equal(model.head("seq@test").weight, src.state_dict()[table])
    tied = {"encoder_embeddings.seq@test.token_emb.weight", "decoder_embeddings.seq@test.token_emb.weight",
            "decoder_embeddings.seq@test.to_logits.weight"}
    assert not tied & ft.plan.fresh and "encoder_embeddings.seq@test.mod_emb" in ft.plan.fresh
    assert ft.lr_scale[table] == 0.5 and "encoder_embeddings.seq@test.mod_emb" not in ft.lr_scale
