"""What a rerun may change when it resumes a run folder, and the checkpoint it resumes from.

A rerun of the same command resumes from the newest checkpoint that verifies. It may change only the fields of
`RESUMABLE`; any other difference from the checkpoint's config is refused, naming each field with its old and new
value (`resume_differences`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import config as config_lib
from ..config import ExperimentConfig
from . import dist
from .checkpoint import CheckpointManager


class CheckpointMismatch(ValueError):
    """The run folder's checkpoints cannot be resumed by this config: written with other settings, or none of
    them verifies."""


# Fields a resumed run may change: they do not change what the model computes or sees, only how long it trains
# (a longer `steps` stretches the remaining schedule), how often it logs, evaluates and saves, and where and how it
# runs. The run folder itself may move. Everything else (model, objective, optimizer, data, masking, batch, seed,
# precision) must be that of the checkpoint.
RESUMABLE = frozenset({
    "train.steps", "train.stop_at", "train.out_dir", "train.log_every", "train.eval_every", "train.save_every",
    "train.keep_last", "train.tensorboard", "train.progress", "train.device", "train.parallel", "train.compile",
    "train.activation_checkpointing", "train.fused_loss", "train.bf16_via_fp32", "data.workers", "data.on_bad_shard",
    "optim.sparse_embeddings",  # the same AdamW update either way; the optimizer state loads into both
})


_ABSENT = "(absent)"


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    """A config dict as ``{"section.field": value}``; a dict-valued field stays one value."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_differences(saved: dict, current: dict) -> list[str]:
    """``"field: old -> new"`` for each field of ``current`` (a config dict) that differs from the checkpoint's
    ``saved`` one and may not change on resume (see `RESUMABLE`)."""
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {json.dumps(a.get(k, _ABSENT))} -> {json.dumps(b.get(k, _ABSENT))}"
            for k in sorted(set(a) | set(b)) if k not in RESUMABLE and a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _check_compatible(saved: dict, current: dict, where: Path) -> None:
    if saved.get("objective") != current.get("objective"):  # every model field differs too: name the one cause
        raise CheckpointMismatch(f"{where} holds a run of objective {saved.get('objective')!r}, not "
                                 f"{current.get('objective')!r} (use a new train.out_dir)")
    diffs = resume_differences(saved, current)
    if diffs:
        raise CheckpointMismatch(f"{where} was written with other settings, which a resumed run cannot change: "
                                 f"{'; '.join(diffs)} (use the same settings, or a new train.out_dir)")


def resumable_checkpoint(ckpt: CheckpointManager, cfg: ExperimentConfig, config_dict: dict) -> Path | None:
    """The newest checkpoint that verifies and that ``cfg`` may resume (None: a fresh start); refuses (after
    shutting the process group down) a folder whose checkpoints all fail to verify, or were written with settings
    that a resumed run cannot change."""
    latest, skipped = ckpt.latest_verified()
    if latest is None and skipped:
        dist.shutdown()
        raise CheckpointMismatch(f"no checkpoint in {ckpt.dir} verifies ({'; '.join(skipped)}); move them away to "
                                 "start over, or use a new train.out_dir")
    if latest is not None:
        saved = json.loads((latest / "config.json").read_text())
        # A section the checkpoint lacks was added to polymodal after it was written (lora, issue 19): the run
        # trained as that section's defaults do, so defaults resume it and anything else is named as a difference.
        defaults = config_lib.to_dict(ExperimentConfig(objective=cfg.objective, model=cfg.model))
        for section, value in config_dict.items():
            if section not in saved and value == defaults.get(section):
                saved[section] = value
        try:
            _check_compatible(saved, config_dict, latest)
        except CheckpointMismatch:
            dist.shutdown()
            raise
    return latest
