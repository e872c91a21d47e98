"""The one training loop, for every objective, from one CPU to many GPUs (torchrun).

A run folder holds ``config.json`` (fully resolved), ``checkpoints/``, ``metrics.jsonl``, ``tb/``,
``loss_curves.png`` and ``release/`` (``config.json`` + ``model.safetensors``, loadable by ``from_pretrained``).
Rerunning the same command resumes from the newest checkpoint that verifies and ends with the same weights as a
run that never stopped. A rerun may change only the fields of `RESUMABLE` (how long, how often to log, evaluate and
save, where and how to run); any other difference is refused, naming each field with its old and new value.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import config as config_lib
from ..config import ExperimentConfig
from ..model.adapters import save_adapters
from ..nn.lora import apply_lora, merged_state_dict
from . import dist
from .checkpoint import CheckpointManager, Progress, gather_model_state
from .files import claim_run_folder, clear_leftovers, replace_folder, unlock_run_folder, write_text_atomic
from .finetune import prepare as prepare_finetune
from .metrics import MetricsLogger, plot_loss_curves
from .objectives import make_objective
from .optim import build_optimizer, lr_at, peak_lr, set_lr
from .parallelize import autocast, parallelize, resolve_mode
from .resume import RESUMABLE, CheckpointMismatch, resumable_checkpoint, resume_differences  # noqa: F401
from .step import keep_freed_memory, train_step


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept. Found at the next step that logs,
    evaluates or saves (the loss is read on the host only there), before any checkpoint of that step."""


def _notice(message: str) -> None:
    """One line on stderr, as the command line's notices are printed (`polymodal.cli.common._notice`)."""
    print(f"notice: {message}", file=sys.stderr)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    val_loss: float | None
    release_dir: Path | None


def _schedule_lr(cfg: ExperimentConfig, progress: Progress, tokens_per_step: int) -> float:
    o, t = cfg.optim, cfg.train
    total = t.steps if o.unit == "steps" else t.steps * tokens_per_step
    now = progress.step if o.unit == "steps" else progress.tokens
    warmup = o.warmup * total if o.warmup < 1 else o.warmup
    return lr_at(now, warmup, total, peak=peak_lr(o, t.batch_size), final=o.final_lr, schedule=o.schedule)


def _step_summaries(pending, objective) -> list[tuple[int, dict[str, float]]]:
    """``(step, summary)`` of each ``(step, sums, stats)`` in ``pending``: the loss sums (this rank's, on the
    training device) summed over ranks in one collective and brought to the host in one sync."""
    sums = dist.all_reduce_sum(torch.stack([s for _, s, _ in pending])).cpu()
    return [(step, objective.summarize(row, stats)) for (step, _, stats), row in zip(pending, sums, strict=True)]


def _filler_batch(objective, world: int):
    """A validation batch for a rank with fewer than the others: the first of the lowest rank that has one (the
    batches are a deterministic function of (rank, world), so any rank can build another's)."""
    return next(b for r in range(world) if (b := objective.val_batches(r, world)))[0]


def _evaluate(objective, model, info, precision: str) -> dict[str, float]:
    """The validation loss over every rank's share of the held-out samples.

    Every rank runs the same number of forward passes and the same collectives, however the samples divide: FSDP
    gathers parameters in each forward, so a rank that skipped one (a held-out set smaller than a rank's share)
    would leave the others waiting in a collective it never joins. A rank short of batches runs a filler batch and
    counts nothing for it. The sums stay on the training device; one host sync at the end.
    """
    batches = list(objective.val_batches(info.rank, info.world_size))
    most = int(dist.all_reduce_max(torch.tensor([len(batches)]))[0])
    if most == 0:
        return {}
    filler = batches[0] if batches else _filler_batch(objective, info.world_size)
    sums, stats = None, None
    model.eval()
    with torch.no_grad():
        for k in range(most):
            batch = batches[k] if k < len(batches) else filler
            st = objective.step_stats([batch])
            with autocast(info.device, precision):
                _, s = objective.loss(model, batch, st, 1, info.device)
            if k >= len(batches):  # filler: in step with the other ranks, counts nothing
                s, st = torch.zeros_like(s), torch.zeros_like(st)
            sums = s if sums is None else sums + s
            stats = st if stats is None else stats + st
    model.train()
    return objective.summarize(dist.all_reduce_sum(sums).cpu(), dist.all_reduce_sum(stats))


def sparse_embeddings_apply(cfg: ExperimentConfig, info) -> bool:
    """Whether this run steps its embedding tables row-sparse (``optim.sparse_embeddings``): one process on the
    CPU. FSDP2 shards dense gradients, and DDP's reducer (with the unused-parameter search that Dirichlet budgets
    need) cannot read sparse ones. On a GPU the dense update stays: choosing a table's active rows reads them on
    the host (a synchronization per table per step), while the dense fused kernel streams the tables at the
    card's bandwidth (not measured here: no GPU was lent). Either way the update is AdamW's (`RowSparseAdamW`)."""
    return (cfg.optim.sparse_embeddings and info.device.type == "cpu"
            and resolve_mode(cfg.train.parallel, info) == "none")


def train(cfg: ExperimentConfig) -> TrainResult:
    """Train ``cfg`` into ``cfg.train.out_dir`` (resuming what is there), holding the folder's lock throughout."""
    info = dist.init_distributed(cfg.train.device)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank and every rerun
    objective = make_objective(cfg)
    run_dir = Path(cfg.train.out_dir)
    lock = claim_run_folder(run_dir, info)  # before anything in the folder is read, cleared or written
    try:
        return _train(cfg, info, objective, run_dir)
    finally:
        unlock_run_folder(lock)


def _train(cfg: ExperimentConfig, info, objective, run_dir: Path) -> TrainResult:
    t = cfg.train
    ckpt = CheckpointManager(run_dir, keep_last=t.keep_last, is_main=info.is_main)
    config_dict = config_lib.to_dict(cfg)
    latest = resumable_checkpoint(ckpt, cfg, config_dict)  # checked before anything is built or loaded
    model = objective.build_model()
    try:  # starting weights (a resumed run only plans them: its checkpoint holds its weights), frozen groups
        ft = prepare_finetune(model, cfg, load=latest is None)
    except config_lib.ConfigError:
        dist.shutdown()
        raise
    if info.is_main and ft.table:
        print(ft.table, file=sys.stderr)
    # LoRA (issue 19) wraps the starting weights: after they load, before the optimizer is built and before a
    # checkpoint (which holds the adapters) loads. The adapters' A is drawn from the run's seed, so a rerun builds
    # the same ones before resuming. Besides the adapters, the parameters that start fresh (new domains) train.
    trained_names = None
    if cfg.lora.r:
        params = dict(model.named_parameters())
        fresh = [n for n in sorted(ft.plan.fresh) if n in params and n not in ft.frozen] if ft.plan else []
        try:
            trained_names = apply_lora(model, cfg.lora, also_train=fresh,
                                       generator=torch.Generator().manual_seed(t.seed))
        except ValueError as e:  # a lora.train prefix that names nothing, no target in this model
            dist.shutdown()
            raise config_lib.ConfigError(str(e)) from None
        if info.is_main:
            n = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f"lora: r={cfg.lora.r}, alpha={cfg.lora.alpha:g} on {', '.join(cfg.lora.targets)}: {n:,} trainable "
                  f"parameters of {sum(p.numel() for p in model.parameters()):,}", file=sys.stderr)
    model = model.to(info.device)
    if info.device.type == "cpu":
        keep_freed_memory()  # each step's gradients reuse the last step's memory instead of page-faulting anew
    trained = parallelize(model, info, mode=t.parallel, activation_checkpointing=t.activation_checkpointing,
                          compile=t.compile)
    optimizer = build_optimizer(model, cfg.optim, t.batch_size, lr_scales=ft.lr_scale,
                                sparse=sparse_embeddings_apply(cfg, info))

    progress = Progress()
    if latest is not None:
        progress = ckpt.load(latest, model, optimizer)
        if progress.data is not None:
            objective.load_data_state(progress.data)  # a streaming loader continues where it stopped
        if info.is_main:  # a rerun otherwise looks like a fresh start (nothing printed under train.progress=false)
            left = (f"step {progress.step} of {t.steps}" if progress.step < t.steps else
                    f"step {progress.step}: train.steps={t.steps} is reached, nothing left to train")
            _notice(f"resuming from {latest} ({left})")
    d = cfg.data
    if info.is_main and d.source == "tokens" and d.val_samples > 0 and not d.val_path:
        # The token stream trains on every sample of its datasets, the head of the first one included.
        _notice(f"validation reads the first {d.val_samples} samples of the first token dataset, which training "
                "reads too: the validation loss is not held out (give held-out samples as data.val_path)")
    if info.is_main:  # only now, after the checks: a refused rerun leaves the run's config.json as it was
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", json.dumps(config_dict, indent=2) + "\n")
    logger = MetricsLogger(run_dir, enabled=info.is_main, tensorboard=t.tensorboard, resume_step=progress.step)
    bar = None
    if info.is_main and t.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=t.steps, initial=progress.step, desc="train", unit="step", dynamic_ncols=True)

    last_loss, val_loss = float("nan"), None
    tick, tokens_since = time.perf_counter(), 0
    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss sums, stats) since the last check
    end = min(t.stop_at, t.steps) if t.stop_at > 0 else t.steps
    while progress.step < end:
        step = progress.step
        micro = objective.micro_batches(step, info.rank, info.world_size)
        # Normalizers of the whole step (all ranks, all micro-batches) and its token count, known before any
        # forward pass: host values, reduced on the host in one collective (float64: exact integers to 2**53).
        local = torch.cat([objective.step_stats(micro).double(),
                           torch.tensor([objective.num_tokens(micro)], dtype=torch.float64)])
        reduced = dist.all_reduce_sum(local)
        stats, step_tokens = reduced[:-1], int(reduced[-1])
        set_lr(optimizer, lr := _schedule_lr(cfg, progress, step_tokens))
        # The loss sums stay on the training device: no host sync per step.
        out = train_step(trained, micro, optimizer, objective, cfg, stats=stats, world=info.world_size,
                         device=info.device)
        pending.append((step, out.sums, stats))
        grad_norm = out.grad_norm
        progress.step += 1
        progress.tokens += step_tokens
        tokens_since += step_tokens

        is_last = progress.step == end
        log_now = progress.step % t.log_every == 0 or is_last
        evaluate = bool(t.eval_every and progress.step % t.eval_every == 0) or is_last
        save = bool(t.save_every and progress.step % t.save_every == 0) or is_last
        if log_now or evaluate or save:
            # The host syncs of training, here only: the losses of the steps since the last check. A NaN is found
            # here (at the next step that logs, evaluates or saves), always before a checkpoint could keep it.
            for done, summary in _step_summaries(pending, objective):
                last_loss = summary["loss"]
                per_mod = {k: v for k, v in summary.items() if k != "loss"}
                if not math.isfinite(last_loss):
                    optimizer.zero_grad(set_to_none=True)
                    detail = ", ".join(f"{k}={v:.4g}" for k, v in per_mod.items())
                    kept = ckpt.latest()
                    raise TrainingDiverged(f"loss is {last_loss} at step {done} ({detail}), found after step "
                                           f"{progress.step}; last good checkpoint: {kept if kept else 'none'}")
            pending.clear()
        if log_now:
            elapsed = time.perf_counter() - tick
            rate = tokens_since / max(elapsed, 1e-9)
            tick, tokens_since = time.perf_counter(), 0
            logger.log(progress.step, {"train/loss": last_loss, **{f"train/loss_{k}": v for k, v in per_mod.items()},
                                       "lr": lr, "grad_norm": float(grad_norm), "tokens_per_s": rate,
                                       "tokens": progress.tokens})
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
        if bar is not None:
            bar.update(1)

        metric = None
        if evaluate and cfg.data.val_samples > 0:
            val = _evaluate(objective, trained, info, t.precision)
            if val:
                val_loss = metric = val["loss"]
                logger.log(progress.step, {f"val/{k}" if k == "loss" else f"val/loss_{k}": v
                                           for k, v in val.items()})
            extra = objective.on_eval(trained, progress.step, run_dir if info.is_main else None)
            if extra:  # metrics and pictures beyond the loss
                logger.log(progress.step, {f"val/{k}": v for k, v in extra.items()})
        if save:
            progress.data = objective.data_state()
            ckpt.save(model, optimizer, progress, config_dict, metric=metric)

    if bar is not None:
        bar.close()
    release = None
    state = gather_model_state(model)
    if info.is_main:
        release = run_dir / "release"
        # Written whole into a hidden sibling, then renamed into place: a kill during the export leaves the last
        # release (or none), never half of one; the rerun that resumes at the last step writes it again.
        clear_leftovers(release)
        tmp = release.with_name(f".release.tmp-{os.getpid()}")
        try:
            if cfg.lora.r:  # the merged model (loads as any release does) and the adapters apart, with their base
                objective.export(merged_state_dict(state, cfg.lora.alpha / cfg.lora.r), tmp)
                frozen = [n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad]
                save_adapters(state, tmp / "adapters", lora=cfg.lora, trained=trained_names, frozen=frozen,
                              model_config=cfg.model, objective=cfg.objective,
                              base=cfg.finetune.init_from or f"a fresh model, train.seed={t.seed}")
            else:
                objective.export(state, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_folder(tmp, release)
        plot_loss_curves(run_dir / "metrics.jsonl", run_dir / "loss_curves.png")
    logger.close()
    # Free the model, its FSDP/DDP state and the optimizer while the interpreter is alive: gloo work objects kept in
    # them and collected only at exit can abort a finished 2-process run (seen once under load, FSDP).
    del trained, model, optimizer
    gc.collect()
    dist.shutdown()
    return TrainResult(run_dir, progress.step, last_loss, val_loss, release)
