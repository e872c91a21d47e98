"""Fine-tune the shipped default model on the 64 px world with one modality it never saw (default: SAM edges).

Command:   POLYMODAL_TOKENS=data/world64_sam_tokens polymodal train configs/finetune_world64.py
           [POLYMODAL_NEW_MODALITY=tok_sam_edge@64] [POLYMODAL_NEW_ROLE=out|in|both]
           [POLYMODAL_INIT_FROM=src/polymodal/weights/default] [finetune.loaded_lr_scale=0.1 finetune.freeze=[...]]
           The token dataset holds every domain of the default model plus the new one, tokenized with the shipped
           tokenizers and the new modality's own (`configs/tokenizer_sam_edge_world64.py`; the whole chain:
           `scripts/transfer_world64.sh`).
Hardware:  2 CPU cores.
Time:      measured at 200 steps of 16 (`train.steps=200 train.batch_size=16 optim.base_lr=0.032
           train.out_dir=runs/transfer/full_mix`, peak lr 2e-3 as the default model's; 3000 tokenized scenes):
           649 s on 2 shared cores (load 5-7, one thread), ~3.2 s/step; the recipe's own 500 steps of 64 not run.
Expect:    measured at those 200 steps (docs/transfer.md, 100 held-out scenes): RGB -> SAM edges F1 0.274 (0.251 at
           step 25; tokenizer ceiling 0.757; single-task full fine-tuning 0.258, LoRA 0.267, from scratch 0.000);
           the default model's table kept within its bootstrap intervals (depth delta1 0.535 -> 0.543, normals
           within 11.25 deg 0.687 -> 0.691, segmentation mIoU 0.231 -> 0.232) except caption colour F1,
           0.289 -> 0.128.

Model: the default model's recipe (`fourm_world64.py`: dim 240, 4+3 layers, tied text tables, the dataset's text
vocabulary) over the token dataset's domains, the new one added as an output (``out``, the default), an input
(``in``: given, never predicted) or both. The starting weights must fit it (the run names each tensor that does
not, `train.finetune`); the new domain's embeddings and head start as a fresh model's (run seed), every other tensor
loads from ``POLYMODAL_INIT_FROM`` and trains at ``finetune.loaded_lr_scale`` (0.1) of the schedule.
Masking: the default recipe's (4M-21's mixture, 128 input and 128 target tokens); an output-only domain gets no
input budget, an input-only one no target budget. A new sequence output is also an input domain with no input
budget: 4M decodes a sequence with its tokens so far as inputs.
"""

import dataclasses
import os
from pathlib import Path

import polymodal
from polymodal.cli import load_recipe
from polymodal.config import FinetuneConfig
from polymodal.modalities import get as get_modality

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = Path(polymodal.__file__).resolve().parent / "weights" / "default"
ROLES = ("out", "in", "both")


def config():
    new = os.environ.get("POLYMODAL_NEW_MODALITY", "tok_sam_edge@64")
    role = os.environ.get("POLYMODAL_NEW_ROLE", "out")
    init_from = os.environ.get("POLYMODAL_INIT_FROM", str(DEFAULT_MODEL))
    if role not in ROLES:
        raise SystemExit(f"POLYMODAL_NEW_ROLE: {role!r} is not one of {', '.join(ROLES)}")
    base = load_recipe(str(HERE / "fourm_world64.py"))  # reads POLYMODAL_TOKENS, registers its tok_* modalities
    names = base.model.domains_in
    if new not in names:
        raise SystemExit(f"POLYMODAL_NEW_MODALITY: {new!r} is not in the token dataset {base.data.path} (it holds "
                         f"{', '.join(names)})")
    old = tuple(n for n in names if n != new)
    as_input = role != "out" or not get_modality(new).is_grid
    model = dataclasses.replace(base.model, domains_in=old + ((new,) if as_input else ()),
                                domains_out=old + ((new,) if role != "in" else ()))
    masking = dataclasses.replace(base.masking, input_alphas={new: 0.0} if role == "out" else {},
                                  target_alphas={new: 0.0} if role == "in" else {})
    train = dataclasses.replace(base.train, out_dir="runs/finetune_world64", steps=500, eval_every=100)
    return dataclasses.replace(base, model=model, masking=masking, train=train,
                               finetune=FinetuneConfig(init_from=init_from, loaded_lr_scale=0.1))
