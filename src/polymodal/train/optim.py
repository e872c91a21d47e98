"""AdamW with 4M's recipe and the learning-rate schedule (a pure function of progress)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from torch.optim.adam import adam as _adam

from ..config import OptimConfig

# Parameters that are never decayed: norms and biases (every 1-D parameter), as in 4M; and by default also embedding
# tables, position tables, modality embeddings and the mask token, which 4M does decay (optim.decay_embeddings).
_EMBEDDING_SUFFIXES = ("pos_emb", "mod_emb", "mask_token")


def no_weight_decay(name: str, param: torch.Tensor, module: nn.Module | None, *,
                    decay_embeddings: bool = False) -> bool:
    if param.ndim <= 1 or name.split(".")[-1] == "bias":
        return True
    if decay_embeddings:
        return False
    return name.split(".")[-1] in _EMBEDDING_SUFFIXES or isinstance(module, (nn.Embedding, nn.LayerNorm))


def param_groups(model: nn.Module, weight_decay: float, *, decay_embeddings: bool = False,
                 lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """The trainable parameters (frozen ones get no group, hence no optimizer state) in groups: decayed, then not
    decayed. ``lr_scales`` (by parameter name: FSDP2 replaces the parameter objects but keeps their names) gives
    some parameters a fraction of the schedule's learning rate (fine-tuning's loaded parameters): they form their
    own pair of groups after those two, with ``lr_scale`` that `set_lr` applies."""
    owners = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, False): [], (1.0, True): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = no_weight_decay(name, p, owners.get(name), decay_embeddings=decay_embeddings)
        scale = float(lr_scales.get(name, 1.0)) if lr_scales else 1.0
        groups.setdefault((scale, exempt), []).append(p)
    # The unscaled pair always (a run without scales keeps the two groups its checkpoints were written with).
    return [{"params": ps, "weight_decay": 0.0 if exempt else weight_decay, **({"lr_scale": s} if s != 1.0 else {})}
            for (s, exempt), ps in groups.items() if ps or s == 1.0]


def peak_lr(cfg: OptimConfig, global_batch: int) -> float:
    """4M's linear scaling: lr = base_lr * global batch / 256."""
    return cfg.base_lr * global_batch / 256


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int, *,
                    lr_scales: Mapping[str, float] | None = None, sparse: bool | None = None) -> torch.optim.Optimizer:
    """AdamW over `param_groups` (``lr_scales``: see there); with row-sparse tables (``sparse``, by default
    ``cfg.sparse_embeddings``; the loop passes False unless the run is one CPU process) the embedding tables get
    row-sparse gradients and `RowSparseAdamW` steps them (the same update, see tests/train/test_sparse_adamw.py)."""
    groups = param_groups(model, cfg.weight_decay, decay_embeddings=cfg.decay_embeddings, lr_scales=lr_scales)
    kw = dict(lr=peak_lr(cfg, global_batch), betas=tuple(cfg.betas), eps=cfg.eps)
    if cfg.sparse_embeddings if sparse is None else sparse:
        sparse_embedding_grads(model)
        return RowSparseAdamW(groups, **kw)
    return torch.optim.AdamW(groups, **kw, fused=_fused_adamw_applies([p for g in groups for p in g["params"]]) or None)


def _fused_adamw_applies(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW kernel takes these parameters: on CUDA, and on the CPU too (one pass over each
    parameter, gradient and moment instead of the for-loop's ~10 element-wise ops: 7x faster over a 65M-value slice
    of the 4M-21 tiny model, 2 threads, load 7.5). Not for FSDP2's sharded (DTensor) parameters on the CPU."""
    if not params or any(p.dtype not in (torch.float32, torch.float16, torch.bfloat16) for p in params):
        return False
    if all(p.device.type == "cuda" for p in params):
        return True
    if torch.distributed.is_available():
        from torch.distributed.tensor import DTensor

        if any(isinstance(p, DTensor) for p in params):
            return False
    return all(p.device.type == "cpu" for p in params)


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also takes row-sparse gradients (torch's has no sparse norm kernel):
    a sparse gradient is coalesced in place (duplicate rows summed; the optimizer then skips that work) and counts
    with the norm of its rows. Returns the total norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not any(g.is_sparse for g in grads):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    total = torch.nn.utils.get_total_norm([p.grad.values() if p.grad.is_sparse else p.grad
                                           for p in params if p.grad is not None])
    torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None and not p.grad.is_sparse],
                                         max_norm, total)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # torch's formula, for the sparse ones
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad.mul_(coef.to(p.grad.device, p.grad.dtype))
    return total


def clip_and_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`clip_grad_norm` then ``optimizer.step()``; returns the total norm before clipping.

    With torch's fused AdamW over plain dense gradients, or `RowSparseAdamW` whose groups run the fused kernel, the
    clipping factor goes to the kernel as its ``grad_scale`` (the gradients divided by it inside the update, and
    stored so), instead of a separate multiply pass over every gradient: the same update up to float rounding
    (1/coef as a divisor). Anything else (FSDP2's DTensors, the for-loop kernel, another optimizer) clips first,
    then steps."""
    grads = [p.grad for p in params if p.grad is not None]
    sparse_ok = type(optimizer) is RowSparseAdamW
    fused = type(optimizer) in (torch.optim.AdamW, torch.optim.Adam, RowSparseAdamW) and all(
        g.get("fused") for g in optimizer.param_groups)
    if not grads or not fused or any(type(g) is not torch.Tensor or (g.is_sparse and not sparse_ok) for g in grads):
        total = clip_grad_norm(params, max_norm) if grads else torch.zeros(())
        optimizer.step()
        return total
    if any(g.is_sparse for g in grads):
        for p in params:  # duplicate rows summed once, here: the norm needs it and the optimizer then skips it
            if p.grad is not None and p.grad.is_sparse:
                p.grad = p.grad.coalesce()
        grads = [p.grad.values() if p.grad.is_sparse else p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    # torch's clip_grad_norm_ multiplies by coef = min(max_norm / (total + 1e-6), 1); the kernel divides by 1/coef
    optimizer.grad_scale = ((total + 1e-6) / max_norm).clamp(min=1.0)
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale
    return total


def lr_at(progress: float, warmup: float, total: float, *, peak: float, final: float,
          schedule: str = "cosine") -> float:
    """Learning rate at ``progress`` (steps or tokens, same unit as ``warmup`` and ``total``).

    Linear warmup from 0 to ``peak``, then cosine (or linear, or constant) decay to ``final`` at ``total``.
    """
    if warmup > 0 and progress < warmup:
        return peak * progress / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    t = min(1.0, (progress - warmup) / (total - warmup))
    if schedule == "linear":
        return final + (peak - final) * (1 - t)
    if schedule == "cosine":
        return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}: choose cosine, linear or constant")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate ``lr`` on every group, times the group's ``lr_scale`` where it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


# ---------------------------------------------------------------------------------- row-sparse embeddings


def sparse_embedding_grads(model: nn.Module, enabled: bool = True) -> list[nn.Parameter]:
    """Give every ``nn.Embedding`` of ``model`` row-sparse gradients (only the looked-up rows, as a sparse COO
    tensor) instead of a dense zero-filled (V, D) gradient per table per step; returns the tables.

    Only `RowSparseAdamW` (or another optimizer that takes sparse gradients) can then step the model. The forward
    pass and the gradient values are unchanged (duplicate rows are summed when the optimizer coalesces them).
    """
    tables = []
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            m.sparse = enabled
            tables.append(m.weight)
    return tables


class RowSparseAdamW(torch.optim.Optimizer):
    """``torch.optim.AdamW`` (decoupled weight decay), exactly, that also steps parameters with row-sparse
    gradients (embedding tables, see `sparse_embedding_grads`) without dense work on the rows that cannot move.

    Dense gradients go through torch's fused (or foreach) AdamW kernel, as ``torch.optim.AdamW`` does.
    For a table with a sparse gradient, AdamW's update of a row whose gradient is zero is
    ``m <- b1 m``, ``v <- b2 v``, ``p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)``. A row is *active* once
    it has had a gradient (its moments are nonzero from then on); the rows that never had one have m = v = 0,
    so their whole AdamW update is ``p <- p (1 - lr wd)`` (nothing at all without weight decay) and their moments
    stay exactly zero. Each step therefore (1) gathers the active rows' parameters, moments and gradients (zero
    for active rows not looked up this step), (2) decays the whole table (one multiply), (3) runs the same
    AdamW kernel on the gathered active rows with the table's step count and (4) writes them back. Every row
    gets AdamW's update of this step, computed eagerly (no deferred catch-up): the result equals dense AdamW up
    to float rounding of the decay multiply and of summing duplicate rows. State (``exp_avg``, ``exp_avg_sq``,
    ``step``) has torch's names and dense shapes, plus ``active`` (V,) bool for sparse tables.

    The cost of a table's step is one pass over it with weight decay (none without) plus work on the active
    rows, instead of AdamW's seven passes (parameter, gradient, two moments; read and written) and the dense
    gradient's zero fill: large while few rows are active (a fixed batch, rare tokens, early training), and
    approaching dense AdamW once every row has been used. Past ``dense_above`` of a table's rows active, the
    table takes the dense update (its gradient scattered into a zero table), which is then cheaper: gathering and
    writing back the active rows costs what the dense update does at 10-15% of a (30000, 384) table's rows
    (`benchmarks/sparse_adamw.py`, 2 threads, torch 2.13: at 10% 4.3 ms vs 6.3, at 15% 6.2 vs 5.3, at 30% 11.3
    vs 5.5, at 50% 18.6 vs 5.9).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, fused: bool | None = None, dense_above: float = 0.12):
        if not 0.0 <= lr or not 0.0 <= eps or not 0.0 <= weight_decay:
            raise ValueError(f"invalid lr, eps or weight_decay: {lr}, {eps}, {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused))
        if fused is None:  # decided once, as build_optimizer does for AdamW (clip_and_step reads it)
            fused = _fused_adamw_applies([p for g in self.param_groups for p in g["params"]])
            for group in self.param_groups:
                group["fused"] = fused
        self.dense_above = dense_above

    def _state(self, p: torch.Tensor, sparse: bool) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if sparse and "active" not in state:
            # A table that so far had dense gradients: a row is active where its moments are nonzero.
            state["active"] = (state["exp_avg"] != 0).any(dim=1) | (state["exp_avg_sq"] != 0).any(dim=1)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            ps, gs, ms, vs, steps, writeback = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not g.is_sparse:
                    st = self._state(p, sparse=False)
                    ps.append(p), gs.append(g), ms.append(st["exp_avg"]), vs.append(st["exp_avg_sq"])
                    steps.append(st["step"])
                    continue
                if p.ndim != 2:
                    raise ValueError("RowSparseAdamW takes sparse gradients of 2-D tables (rows) only")
                st = self._state(p, sparse=True)
                g = g.coalesce()
                idx, vals = g.indices()[0], g.values()
                active = st["active"]
                active[idx] = True
                rows = active.nonzero().squeeze(1)  # sorted
                if rows.shape[0] > self.dense_above * p.shape[0]:
                    # most rows active: gathering them costs more than AdamW over the whole table
                    dense = torch.zeros_like(p).index_copy_(0, idx, vals)
                    ps.append(p), gs.append(dense), ms.append(st["exp_avg"]), vs.append(st["exp_avg_sq"])
                    steps.append(st["step"])
                    continue
                grad_rows = vals.new_zeros(rows.shape[0], p.shape[1])
                grad_rows[torch.searchsorted(rows, idx)] = vals
                p_rows, m_rows, v_rows = p[rows], st["exp_avg"][rows], st["exp_avg_sq"][rows]
                if wd != 0:
                    p.mul_(1 - lr * wd)  # every row's decay; the active rows are recomputed below
                ps.append(p_rows), gs.append(grad_rows), ms.append(m_rows), vs.append(v_rows)
                steps.append(st["step"])
                writeback.append((p, st, rows, p_rows, m_rows, v_rows))
            if not ps:
                continue
            fused = group["fused"]
            if fused is None:
                fused = _fused_adamw_applies(ps)
            scale = getattr(self, "grad_scale", None)  # set by `clip_and_step`: the clipping, inside the kernel
            if scale is not None and not fused:
                raise RuntimeError("grad_scale needs the fused kernel: clip the gradients before step() instead")
            _adam(ps, gs, ms, vs, [], steps, fused=fused, foreach=None if fused else True,
                  grad_scale=scale, decoupled_weight_decay=True, amsgrad=False, beta1=b1, beta2=b2, lr=lr,
                  weight_decay=wd, eps=eps, maximize=False)
            for p, st, rows, p_rows, m_rows, v_rows in writeback:
                p.index_copy_(0, rows, p_rows)
                st["exp_avg"].index_copy_(0, rows, m_rows)
                st["exp_avg_sq"].index_copy_(0, rows, v_rows)
        return loss
