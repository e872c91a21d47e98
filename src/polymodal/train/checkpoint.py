"""Training checkpoints: atomic, complete (model, optimizer, progress, random state), prunable, resumable.

Layout of a run folder::

    checkpoints/step_00000100/   model.safetensors  optimizer.safetensors  state.json  config.json
    checkpoints/best.json        {"step": ..., "metric": ...}

A checkpoint is written into a hidden temporary folder, fsynced and renamed into place, so a kill or a power loss
at any moment leaves either the complete new checkpoint or none (the previous ones are untouched). A checkpoint
damaged all the same (a disk that lies about fsync, a copy cut short) is found by `verify`; a resumed run skips
it, with a warning (a one-line notice on the command line), for the newest one that verifies. Only safetensors
and JSON are read.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .files import fsync_path, write_text_atomic

_STEP_DIR = re.compile(r"^step_(\d{8})$")
FILES = ("model.safetensors", "optimizer.safetensors", "config.json", "state.json")


class CheckpointWriteError(OSError):
    """Saving failed (e.g. a full disk); the previous checkpoints are intact."""


class CheckpointSkipped(UserWarning):
    """A damaged checkpoint was passed over for an older one."""


@dataclass
class Progress:
    """Where a run stands: what a restarted run needs besides weights and optimizer moments."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # target + input tokens seen (for token-based schedules)
    best_metric: float | None = None
    best_step: int | None = None
    data: dict | None = None  # a streaming loader's position (objectives with data_state), else None


def _full_options() -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict on CPU; a collective under FSDP, so every rank calls it."""
    return get_model_state_dict(model, options=_full_options())


def _dedupe(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors that share memory (tied tables) stored once: safetensors refuses shared tensors. Returns the
    tensors to write and ``{dropped name: stored name}``."""
    out, first, aliases = {}, {}, {}
    for k, v in sd.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if v.numel() and key in first:
            aliases[k] = first[key]
            continue
        first.setdefault(key, k)
        out[k] = v.contiguous()
    return out, aliases


def _flatten_optimizer(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {}
    for fqn, state in osd["state"].items():
        for key, value in state.items():
            tensors[f"{fqn}::{key}"] = torch.as_tensor(value).contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, {"param_groups": groups}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        fqn, key = name.rsplit("::", 1)
        state.setdefault(fqn, {})[key] = t
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _fit_optimizer(osd: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A saved optimizer state made loadable into ``optimizer`` when the run switched between torch's AdamW and
    `RowSparseAdamW` (``optim.sparse_embeddings``, the same update): each group takes the target's keys (a saved
    value where there is one), and a dense AdamW drops the sparse one's row flags (``active``)."""
    from .optim import RowSparseAdamW

    targets = optimizer.param_groups
    if len(targets) == len(osd["param_groups"]):
        osd["param_groups"] = [{**{k: v for k, v in t.items() if k != "params"},
                                **{k: v for k, v in g.items() if k in t or k == "params"}}
                               for g, t in zip(osd["param_groups"], targets, strict=True)]
    if not isinstance(optimizer, RowSparseAdamW):
        for st in osd["state"].values():
            st.pop("active", None)
    return osd


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


class CheckpointManager:
    def __init__(self, run_dir: str | Path, *, keep_last: int = 2, is_main: bool = True):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)
        self.is_main = is_main
        if is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            for junk in self.dir.glob(".tmp-*"):  # left by a kill in the middle of a save
                shutil.rmtree(junk, ignore_errors=True)

    def steps(self) -> list[int]:
        if not self.dir.exists():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _STEP_DIR.match(p.name))
                      and (p / "state.json").exists())

    def path(self, step: int) -> Path:
        return self.dir / f"step_{step:08d}"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def latest_verified(self) -> tuple[Path | None, list[str]]:
        """The newest checkpoint that `verify` passes, and a line for each newer one skipped (also warned)."""
        skipped = []
        for step in reversed(self.steps()):
            problem = verify(self.path(step))
            if problem is None:
                return self.path(step), skipped
            skipped.append(f"{self.path(step)}: {problem}")
            if self.is_main:  # once for a torchrun job, not once per rank
                warnings.warn(f"skipping damaged checkpoint {self.path(step)} ({problem})", CheckpointSkipped,
                              stacklevel=2)
        return None, skipped

    # -------------------------------------------------------------------------------------------- save

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
             config: dict[str, Any], *, metric: float | None = None) -> Path | None:
        """Every rank calls this (gathering is collective); rank 0 writes. Returns the folder on rank 0."""
        model_sd = gather_model_state(model)
        optim_sd = get_optimizer_state_dict(model, optimizer, options=_full_options())
        is_best = metric is not None and (progress.best_metric is None or metric <= progress.best_metric)
        if is_best:
            progress.best_metric, progress.best_step = metric, progress.step
        if not self.is_main:
            return None
        final = self.path(progress.step)
        tmp = self.dir / f".tmp-{final.name}-{os.getpid()}"
        try:
            tmp.mkdir(parents=True)
            tensors, aliases = _dedupe(model_sd)
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"aliases": json.dumps(aliases)})
            opt_tensors, opt_meta = _flatten_optimizer(optim_sd)
            rng_tensors, rng_meta = _rng_state()
            save_file({**opt_tensors, **rng_tensors}, str(tmp / "optimizer.safetensors"))
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            state = {"progress": progress.__dict__, "optimizer": opt_meta, "rng": rng_meta}
            (tmp / "state.json").write_text(json.dumps(state) + "\n")
            for name in FILES:  # data on the disk before the rename makes the folder visible
                fsync_path(tmp / name)
            fsync_path(tmp)
            if final.exists():  # a rerun saving the same step again (or replacing a damaged one)
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_path(self.dir)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointWriteError(e.errno, f"could not write checkpoint {final.name} ({e}); "
                                                f"previous checkpoints are intact") from e
        if is_best:
            write_text_atomic(self.dir / "best.json", json.dumps({"step": progress.step, "metric": metric}) + "\n")
        self._prune(progress.best_step)
        return final

    def _prune(self, best_step: int | None) -> None:
        steps = self.steps()
        for s in steps[: -self.keep_last]:
            if s != best_step:
                shutil.rmtree(self.path(s), ignore_errors=True)

    # -------------------------------------------------------------------------------------------- load

    def load(self, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Progress:
        """Restore model, optimizer and random state from ``path``; returns the run's progress."""
        state = json.loads((path / "state.json").read_text())
        model_sd = load_file(str(path / "model.safetensors"))
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        model_sd.update({k: model_sd[v] for k, v in aliases.items()})
        tensors = load_file(str(path / "optimizer.safetensors"))
        opt_tensors = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
        set_model_state_dict(model, model_sd, options=StateDictOptions(full_state_dict=True))
        # strict=False: a parameter that never had a gradient (e.g. the mask token of a model whose targets are all
        # sequences) has no optimizer state to save; a straight run would create it on its first gradient as well.
        osd = _fit_optimizer(_unflatten_optimizer(opt_tensors, state["optimizer"]), optimizer)
        set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True, strict=False))
        _set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")}, state["rng"])
        return Progress(**state["progress"])


def verify(path: str | Path) -> str | None:
    """What is wrong with the checkpoint folder ``path`` (a missing file, a safetensors header or size that does
    not parse, JSON that does not), or None. Reads headers and JSON only, not the tensors."""
    path = Path(path)
    for name in FILES:
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        try:
            if name.endswith(".json"):
                data = json.loads(file.read_text())
                need = ("progress", "optimizer", "rng") if name == "state.json" else ("objective", "model")
                if not isinstance(data, dict) or any(k not in data for k in need):
                    return f"{name} lacks {', '.join(need)}"
            else:
                with safe_open(str(file), "pt") as f:  # checks the header and that it covers the file's size
                    json.loads((f.metadata() or {}).get("aliases", "{}"))
        except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            return f"{name}: {e}"
    return None
