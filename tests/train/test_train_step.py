"""The loop's step (`train.step.train_step`) is what the loop runs and what benchmarks/train_step.py times; its
fused head + cross-entropy (``train.fused_loss``) gives the loss and gradients of the logits path."""

from __future__ import annotations

import copy

import pytest
import torch

from polymodal.config import apply_overrides
from polymodal.train import loop as loop_mod
from polymodal.train.objectives import make_objective
from polymodal.train.step import forward_context, train_step

from .helpers import tiny_experiment


def _loss_and_grads(cfg, model, objective, micro, stats):
    model.zero_grad(set_to_none=True)
    total, sums = None, None
    for batch in micro:
        with forward_context(cfg, torch.device("cpu")):
            loss, s = objective.loss(model, batch, stats, 1)
        loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
        sums = s if sums is None else sums + s
    return total, sums, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-5), ("bf16", 2e-2)])
def test_fused_loss_gives_the_loss_and_gradients_of_the_logits_path(tmp_path, precision, rtol):
    base = tiny_experiment(tmp_path / "run", f"train.precision={precision}", "train.grad_accum=2")
    torch.manual_seed(0)
    objective = make_objective(base)
    model = objective.build_model()
    micro = objective.micro_batches(3, 0, 1)
    stats = objective.step_stats(micro)
    results = {}
    for fused in (False, True):
        cfg = apply_overrides(base, [f"train.fused_loss={str(fused).lower()}"])
        results[fused] = _loss_and_grads(cfg, copy.deepcopy(model), make_objective(cfg), micro, stats)
    (loss_a, sums_a, grads_a), (loss_b, sums_b, grads_b) = results[False], results[True]
    torch.testing.assert_close(loss_b, loss_a, rtol=rtol, atol=0)
    torch.testing.assert_close(sums_b, sums_a, rtol=rtol, atol=0)
    assert set(grads_a) == set(grads_b) and any("to_logits" in n for n in grads_a)  # the heads get gradients
    for name in grads_a:
        scale = grads_a[name].abs().max().clamp(min=1e-12)  # relative to each tensor's largest entry
        assert (grads_b[name] - grads_a[name]).abs().max() <= rtol * scale, name


def test_the_loop_steps_with_train_step(tmp_path, monkeypatch):
    calls = []
    real = loop_mod.train_step

    def counting(model, micro, optimizer, objective, cfg, **kw):
        calls.append(len(micro))
        return real(model, micro, optimizer, objective, cfg, **kw)

    monkeypatch.setattr(loop_mod, "train_step", counting)
    kept = []  # the allocator setting is process-wide: counted here, not applied to the test process
    monkeypatch.setattr(loop_mod, "keep_freed_memory", lambda: kept.append(1))
    loop_mod.train(tiny_experiment(tmp_path / "run", "train.steps=3", "train.grad_accum=2", "data.val_samples=0"))
    assert calls == [2, 2, 2]
    assert kept == [1]  # once, at the start of a CPU run


def test_train_step_alone_takes_the_loops_steps(tmp_path):
    """Three steps of train_step by hand (learning rate as the loop sets it) end with the loop's weights."""
    from polymodal.train.optim import build_optimizer, set_lr

    from .helpers import release_weights

    cfg = tiny_experiment(tmp_path / "run", "train.steps=3", "data.val_samples=0", "optim.schedule=constant",
                          "optim.warmup=0")
    loop_mod.train(cfg)
    torch.manual_seed(cfg.train.seed)
    objective = make_objective(cfg)
    model = objective.build_model()
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    for step in range(3):
        micro = objective.micro_batches(step, 0, 1)
        set_lr(optimizer, cfg.optim.base_lr * cfg.train.batch_size / 256)
        train_step(model, micro, optimizer, objective, cfg, stats=objective.step_stats(micro))
    saved, mine = release_weights(tmp_path / "run"), model.state_dict()
    assert saved and all(torch.equal(mine[name], t) for name, t in saved.items())
