"""A single-task specialist (RGB tokens -> one target) with the architecture, data and steps of a 4M recipe.

Command:   POLYMODAL_SPECIALIST=depth POLYMODAL_TOKENS=data/world64_tokens \
               polymodal train configs/specialist_world64.py
           (POLYMODAL_SPECIALIST: depth, normal, semseg, det or caption; POLYMODAL_BASE_RECIPE: the any-to-any
           recipe to match, default configs/fourm_world64.py (the default model's), else fourm_tokens_world64.py;
           key=value overrides work as in any recipe)
           then, with the base model's tokenizers:
           polymodal bundle --model runs/<base out_dir>_specialist_depth/release --tokenizer TOKENIZER_DIRS... \
               --text-tokenizer TEXT_TOK --out runs/specialist_depth_bundle
           polymodal eval --model BASE_BUNDLE --compare depth=runs/specialist_depth_bundle --ceiling
Hardware:  as the base recipe (2-core CPU or one GPU).
Time:      fewer tokens per step than the base recipe (64 RGB inputs + one target), so each step is cheaper; the
           same number of steps: ~45 min for 1000 steps on one core of 2 (two specialists side by side).
           All five and the 4M run of the same schedule: `bash scripts/specialists_default.sh 1000` (~2 h).
Expect:    measured at 1000 steps (README, "The default model"): depth abs-rel 0.453, normals 20.9 deg,
           segmentation mIoU 0.236, boxes mAP 0.000, caption class F1 0.364 (200 held-out scenes); 4M-21's claim
           is the any-to-any model within 10% (relative) of each (`polymodal eval ... --compare --bootstrap 500`).

The derivation is `polymodal.eval.specialists.specialist_config` (see its docstring): domains_in = (tok_rgb@64,),
domains_out = (the target,), masking gives every RGB token as input and every target token as target; data,
optimizer and training schedule are the base recipe's; out_dir gains ``_specialist_<task>``.
"""

import os
from pathlib import Path

from polymodal.cli import load_recipe
from polymodal.eval.specialists import specialist_config

HERE = Path(__file__).resolve().parent
BASE = next(p for p in (HERE / "fourm_world64.py", HERE / "fourm_tokens_world64.py") if p.is_file())


def config():
    base = load_recipe(os.environ.get("POLYMODAL_BASE_RECIPE", str(BASE)))
    return specialist_config(base, os.environ.get("POLYMODAL_SPECIALIST", "depth"))
