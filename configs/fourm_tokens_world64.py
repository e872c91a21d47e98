"""4M masked modeling from pre-tokenized world shards (training reads tokens, never pixels).

Command:   polymodal data synth --out data/world64 --n 2000 --res 64 --workers 2
           (train or reuse tokenizers: configs/tokenizer_*_world64.py, polymodal tokenizer train-text ...)
           polymodal data tokenize data/world64 --tokenizer rgb=TOK_RGB depth=TOK_DEPTH caption=TEXT_TOK det=TEXT_TOK \
               --crops 4 --out data/world64_tokens --workers 2
           POLYMODAL_TOKENS=data/world64_tokens polymodal train configs/fourm_tokens_world64.py
Hardware:  CPU (2 cores) or one GPU; ``data.workers=2`` masks in two processes.
Time:      smoke-tested only: 20 steps of 8 on 24 samples (rgb, depth, caption, det, metadata, color_palette; tiny
           *untrained* tokenizers) took 85 s wall (34 s CPU) on the loaded shared 2-core machine, loss 6.54 at
           step 10 -> 6.42 at step 20; a full run with trained tokenizers is not measured yet.
Expect:    training loss falling from ~ln(vocabulary) per modality; no figure measured yet.

The dataset folder is read when the recipe is built (``POLYMODAL_TOKENS``, default ``data/world64_tokens``): it
registers the stored token modalities and takes the text vocabulary size from it, so the model matches the data.
A mixture: ``data.mixture='{"data/world64_tokens": 0.8, "captions.txt": 0.2}' data.text_tokenizer=TEXT_TOK``.
"""

import os

from polymodal.config import DataConfig, ExperimentConfig, MaskingConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.data.sources import TokenSource


def config() -> ExperimentConfig:
    path = os.environ.get("POLYMODAL_TOKENS", "data/world64_tokens")
    src = TokenSource(path)  # registers tok_* modalities; fails clearly when the folder is not a token dataset
    specs = src.info["modalities"]
    names = tuple(specs)
    vocab = {n: s["spec"]["vocab_size"] for n, s in specs.items() if s["spec"]["kind"] == "sequence"}
    return ExperimentConfig(
        objective="fourm",
        model=ModelConfig.preset("test", domains_in=names, domains_out=names, vocab_sizes=vocab),
        masking=MaskingConfig(num_input_tokens=128, num_target_tokens=128),
        data=DataConfig(source="tokens", path=path, val_samples=64, workers=2, shuffle_buffer=1000),
        optim=OptimConfig(base_lr=1e-2, warmup=0.05, final_lr=1e-5),
        train=TrainConfig(out_dir="runs/fourm_tokens_world64", steps=1000, batch_size=32, log_every=10,
                          eval_every=200, save_every=200),
    )
