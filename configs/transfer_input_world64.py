"""A new input modality (given, never predicted) for segmentation: RGB + SAM edges -> semseg against RGB -> semseg.

Command:   POLYMODAL_INPUT=with|without POLYMODAL_TOKENS=data/world64_sam_tokens \
               polymodal train configs/transfer_input_world64.py
           (both runs and the evaluation: `bash scripts/transfer_world64.sh` stage 6)
Hardware:  2 shared CPU cores.
Time:      300 steps of 16 on 2 shared cores (load ~5, the two side by side): with 526 s, without 401 s.
Expect:    segmentation mIoU on 100 held-out scenes (docs/transfer.md): with 0.239 (0.230-0.246), without 0.232
           (0.220-0.240), paired gap +3.0% (-0.2% to +6.8%); at 100 steps no difference (0.232 both).

Both fine-tune the shipped default model for the same steps on the same batches, every segmentation token a
target; ``with`` adds ``tok_sam_edge@64`` (the tokens of scripts/transfer_world64.sh's SAM-edge tokenizer) as an
input domain only (fresh input embeddings, no head) and gives every one of its tokens beside every RGB token;
``without`` gives the RGB tokens alone. The loaded parameters train at 0.1x the schedule's learning rate, the new
embeddings at 1x (peak 2e-3, the default model's).
"""

import dataclasses
import os
from pathlib import Path

from polymodal.cli import load_recipe
from polymodal.config import FinetuneConfig, MaskingConfig

HERE = Path(__file__).resolve().parent
NEW, SOURCE, TARGET = "tok_sam_edge@64", "tok_rgb@64", "tok_semseg@64"
DEFAULT_MODEL = str(HERE.parent / "src/polymodal/weights/default")
BATCH, PEAK_LR = 16, 2e-3


def config():
    kind = os.environ.get("POLYMODAL_INPUT", "with")
    if kind not in ("with", "without"):
        raise SystemExit(f"POLYMODAL_INPUT: {kind!r} is not one of with, without")
    base = load_recipe(str(HERE / "fourm_world64.py"))
    outs = tuple(d for d in base.model.domains_out if d != NEW)
    ins = tuple(d for d in base.model.domains_in if d != NEW) + ((NEW,) if kind == "with" else ())
    given = (SOURCE, NEW) if kind == "with" else (SOURCE,)
    model = dataclasses.replace(base.model, domains_in=ins, domains_out=outs,
                                vocab_sizes={k: v for k, v in base.model.vocab_sizes.items() if k in ins + outs})
    # Every given domain's 64 tokens in (the refill hands a Dirichlet share cut off by one domain's size to the
    # other), every segmentation token out; other domains at alpha 0.
    masking = MaskingConfig(num_input_tokens=64 * len(given), num_target_tokens=64, mixture="uniform",
                            input_alphas={d: 0.0 for d in ins if d not in given},
                            target_alphas={d: 0.0 for d in outs if d != TARGET}, refill="clamped")
    train = dataclasses.replace(base.train, out_dir=f"runs/transfer/input_{kind}", steps=200, batch_size=BATCH,
                                log_every=10, eval_every=0, save_every=50, keep_last=20)
    optim = dataclasses.replace(base.optim, base_lr=PEAK_LR * 256 / BATCH)
    finetune = FinetuneConfig(init_from=DEFAULT_MODEL, loaded_lr_scale=0.1)
    return dataclasses.replace(base, model=model, masking=masking, train=train, optim=optim, finetune=finetune)
