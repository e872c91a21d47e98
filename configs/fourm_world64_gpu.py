"""The default model's recipe at GPU scale: the same world, tokenizers and mixture, a 4M-small model, 100x the compute.

Command:   after scripts/train_default.sh's world, tokenizers and tokens (or with more scenes: see Data below),
           POLYMODAL_TOKENS=data/world64_tokens polymodal train configs/fourm_world64_gpu.py
           torchrun --nproc_per_node 8 -m polymodal train configs/fourm_world64_gpu.py train.batch_size=1024
Hardware:  one GPU with >= 24 GB (bf16 autocast; activations of 256 x 256 tokens at dim 512 with 8+8 blocks), or
           several with torchrun (DDP; train.parallel=fsdp for larger presets). No CPU run: ~250x the default's
           step cost.
Time:      estimated, not measured (no GPU in this project's sessions yet): 30,000 steps x 256 samples x 256 tokens is
           2.0e9 tokens; at 6 x 59M non-embedding parameters per token that is 7e17 FLOPs: 0.5-1 h on one H100,
           1.5-3 h on an A100, at 20-40% of the bf16 peak.
Data:      the 50,000-scene world is seen ~150 times at this length; render more scenes for a model that should not
           memorize them (`polymodal data synth --n 500000 --workers N`, then tokenize as for the default).
Expect:    unmeasured. The CPU default (3000 steps x 64) was still improving when it stopped (validation loss 3.23,
           falling); this recipe is how to find out how far the design goes on this world. Compare it with its
           specialists as for the default: POLYMODAL_BASE_RECIPE=configs/fourm_world64_gpu.py and
           configs/specialist_world64.py.

The shipped-size limit does not apply here (64M parameters: 128 MB in fp16 before the tokenizers): the model is
the `small` preset (dim 512, 8+8 blocks, 8 heads, SwiGLU, no biases) with tied text tables as in the default.
Learning rate: 4M's base_lr 1e-4 per 256 samples is for 4M's scale; this keeps the default recipe's 8e-3 per 256
(peak 8e-3 at batch 256), which the CPU run found stable at its width — lower it if the loss spikes at dim 512.
"""

import dataclasses
from pathlib import Path

from polymodal.cli import load_recipe
from polymodal.config import ModelConfig

HERE = Path(__file__).resolve().parent


def config():
    base = load_recipe(str(HERE / "fourm_world64.py"))
    m = base.model
    model = ModelConfig.preset("small", domains_in=m.domains_in, domains_out=m.domains_out,
                               vocab_sizes=dict(m.vocab_sizes), tie_sequence_tables=True)
    train = dataclasses.replace(base.train, out_dir="runs/fourm_world64_gpu", steps=30_000, batch_size=256,
                                precision="bf16", device="auto", eval_every=1000, save_every=500, log_every=50)
    data = dataclasses.replace(base.data, workers=4, shuffle_buffer=20_000)
    return dataclasses.replace(base, model=model, train=train, data=data)
