"""Transfer to a new output modality, SAM edges (``tok_sam_edge@64``), from RGB: three runs of equal steps.

Command:   POLYMODAL_TRANSFER=full|lora|scratch POLYMODAL_TOKENS=data/world64_sam_tokens \
               polymodal train configs/transfer_world64.py
           (the whole experiment, data to figures, resumable: `bash scripts/transfer_world64.sh`)
Hardware:  2 shared CPU cores.
Time:      200 steps of 16 (the recipe's defaults), the three side by side, one thread each, on 2 shared cores at
           load 5-10: full 1112 s, LoRA 1048 s, scratch 1102 s (~5.4 s/step each).
Expect:    edge F1 on 100 held-out scenes at step 200 (docs/transfer.md): full 0.258, LoRA 0.267, scratch 0.000;
           tokenizer ceiling 0.757. Forgetting (merged models): depth delta1 0.535 -> 0.444 (full) / 0.440 (LoRA).

All three learn one mapping, every RGB token in, every SAM-edge token out (`eval.specialists.specialist_config`'s
masking), on the same batches for the same steps; only the starting point and what trains differ:

- ``full``: the model of the default recipe (`fourm_world64.py`: every domain of the default model plus the new
  one) starting from the shipped default model (``finetune.init_from``): the new domain's embeddings and head start
  fresh, the loaded parameters train at 0.1x the schedule's learning rate (``finetune.loaded_lr_scale``);
- ``lora``: the same start, rank-8 adapters on every attention and MLP projection, only they and the new domain's
  embeddings and head train (``lora.r``, ``lora.train``);
- ``scratch``: the specialist of `specialist_world64.py` (the same size, RGB tokens -> SAM edges only), from a
  fresh model.

All three: batch 16, peak learning rate 2e-3 (the default model's), 5% warmup, cosine; a checkpoint every 25 steps.

The full and LoRA models keep every domain of the default model, so what they forget of the others is measured
with `polymodal eval` on their bundles (README, "Fine-tune"). Steps, batch and checkpoints: ``train.*`` overrides
(the script sets them).
"""

import dataclasses
import os
from pathlib import Path

from polymodal.cli import load_recipe
from polymodal.config import FinetuneConfig, LoRAConfig, MaskingConfig
from polymodal.eval.specialists import specialist_config

HERE = Path(__file__).resolve().parent
NEW, SOURCE = "tok_sam_edge@64", "tok_rgb@64"
DEFAULT_MODEL = str(HERE.parent / "src/polymodal/weights/default")
BATCH, PEAK_LR = 16, 2e-3


def config():
    kind = os.environ.get("POLYMODAL_TRANSFER", "full")
    if kind not in ("full", "lora", "scratch"):
        raise SystemExit(f"POLYMODAL_TRANSFER: {kind!r} is not one of full, lora, scratch")
    base = load_recipe(str(HERE / "fourm_world64.py"))
    spec = specialist_config(base, "sam_edge", source=SOURCE, target=NEW)
    train = dataclasses.replace(base.train, out_dir=f"runs/transfer/{kind}", steps=200, batch_size=BATCH,
                                log_every=10, eval_every=0, save_every=25, keep_last=20)
    # The default model's peak learning rate (2e-3) at this batch: peak = base_lr * batch / 256.
    optim = dataclasses.replace(base.optim, base_lr=PEAK_LR * 256 / BATCH)
    if kind == "scratch":
        return dataclasses.replace(spec, train=train, optim=optim)
    domains = tuple(dict.fromkeys(base.model.domains_in + base.model.domains_out))
    # Every other domain at alpha 0: the masking of the specialist over the full model's domains.
    masking = dataclasses.replace(
        spec.masking, input_alphas={d: 0.0 for d in domains if d != SOURCE},
        target_alphas={d: 0.0 for d in domains if d != NEW})
    assert isinstance(masking, MaskingConfig)
    finetune = FinetuneConfig(init_from=DEFAULT_MODEL, loaded_lr_scale=0.1 if kind == "full" else 1.0)
    lora = LoRAConfig()
    if kind == "lora":
        lora = LoRAConfig(r=8, alpha=16.0, train=(f"encoder_embeddings.{NEW}", f"decoder_embeddings.{NEW}"))
    return dataclasses.replace(base, masking=masking, train=train, optim=optim, finetune=finetune, lora=lora)
