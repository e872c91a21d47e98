"""Fine-tune the shipped default model on the 64 px world with one modality it never saw (default: SAM edges).

Command:   POLYMODAL_TOKENS=data/world64_sam_tokens polymodal train configs/finetune_world64.py
           [POLYMODAL_NEW_MODALITY=tok_sam_edge@64] [POLYMODAL_NEW_ROLE=out|in|both]
           [POLYMODAL_INIT_FROM=src/polymodal/weights/default] [finetune.loaded_lr_scale=0.1 finetune.freeze=[...]]
           The token dataset holds every domain of the default model plus the new one, tokenized with the shipped
           tokenizers and the new modality's own (`configs/tokenizer_sam_edge_world64.py`; the whole chain:
           `scripts/transfer_world64.sh`).
Hardware:  2 CPU cores.
Time:      not measured yet.
Expect:    not measured yet (the transfer measurements fill this in).

Model: the starting weights' own config (`train.finetune.source_config`: dim 240, 4+3 layers, tied text tables,
the world's 4.6k text vocabulary) with the new domain added as an output (``out``, the default), an input
(``in``: given, never predicted) or both. Its embeddings and head start as a fresh model's (run seed); every other
tensor loads from ``POLYMODAL_INIT_FROM`` and trains at ``finetune.loaded_lr_scale`` (0.1) of the schedule.
Masking: the default recipe's (4M-21's mixture, 128 input and 128 target tokens); an output-only domain gets no
input budget, an input-only one no target budget.
"""

import dataclasses
import os
from pathlib import Path

import polymodal
from polymodal.config import DataConfig, ExperimentConfig, FinetuneConfig, MaskingConfig, OptimConfig, TrainConfig
from polymodal.data.sources import TokenSource
from polymodal.train.finetune import source_config

DEFAULT_MODEL = Path(polymodal.__file__).resolve().parent / "weights" / "default"
ROLES = ("out", "in", "both")


def config() -> ExperimentConfig:
    path = os.environ.get("POLYMODAL_TOKENS", "data/world64_sam_tokens")
    new = os.environ.get("POLYMODAL_NEW_MODALITY", "tok_sam_edge@64")
    role = os.environ.get("POLYMODAL_NEW_ROLE", "out")
    init_from = os.environ.get("POLYMODAL_INIT_FROM", str(DEFAULT_MODEL))
    if role not in ROLES:
        raise SystemExit(f"POLYMODAL_NEW_ROLE: {role!r} is not one of {', '.join(ROLES)}")
    src = TokenSource(path)  # registers the stored tok_* modalities (the new one too)
    if new not in src.names:
        raise SystemExit(f"POLYMODAL_NEW_MODALITY: {new!r} is not in the token dataset {path} (it holds "
                         f"{', '.join(src.names)})")
    base = source_config(init_from)
    if new in base.domains_in + base.domains_out:
        raise SystemExit(f"POLYMODAL_NEW_MODALITY: {init_from} already has {new!r}")
    model = dataclasses.replace(base, domains_in=base.domains_in + ((new,) if role != "out" else ()),
                                domains_out=base.domains_out + ((new,) if role != "in" else ()))
    return ExperimentConfig(
        objective="fourm",
        model=model,
        masking=MaskingConfig(num_input_tokens=128, num_target_tokens=128, mixture="4m21",
                              input_alphas={new: 0.0} if role == "out" else {},
                              target_alphas={new: 0.0} if role == "in" else {}),
        data=DataConfig(source="tokens", path=path, val_samples=256, workers=1, shuffle_buffer=2000),
        optim=OptimConfig(base_lr=8e-3, warmup=0.05, final_lr=1e-5, weight_decay=0.05),
        train=TrainConfig(out_dir="runs/finetune_world64", steps=500, batch_size=64, log_every=10,
                          eval_every=100, save_every=50),
        finetune=FinetuneConfig(init_from=init_from, loaded_lr_scale=0.1),
    )
