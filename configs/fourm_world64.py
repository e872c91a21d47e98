"""The default polymodal model: 4M-21's recipe, scaled to the 64 px synthetic world and a 2-core CPU.

Command (the whole pipeline, from nothing; each step resumes when rerun):
           polymodal data synth --out data/world64 --n 50000 --res 64 --workers 2 --text-embeddings      (~30 min)
           for m in rgb depth normal semseg edges minilm_global; do
             polymodal tokenizer train configs/tokenizer_${m}_world64.py data.path=data/world64 train.steps=3000 \
                 train.out_dir=runs/default/tok_$m; done                                   (~8 min each, 1 core)
           polymodal tokenizer train-text --corpus CAPTIONS.txt --vocab-size 4600 --out runs/default/tok_text
           polymodal data tokenize data/world64 --tokenizer rgb=runs/default/tok_rgb/release ... \
               --out data/world64_tokens
           POLYMODAL_TOKENS=data/world64_tokens polymodal train configs/fourm_world64.py
Hardware:  2 CPU cores (one GPU runs it in minutes; raise train.batch_size and keep base_lr).
Time:      about two hours for 3000 steps of 64 samples on 2 cores (measured: see the model card).
Expect:    see the model card of the shipped weights (src/polymodal/weights/default/README.md).

Model: dim 240, 4+3 layers, 4 heads (7.8M parameters, 15.6 MB in fp16): the size that fits the 25 MB budget of
shipped weights (model 15.6 + tokenizers 8 MB in fp16) and still sees a few passes over the world in CPU hours.
Every text-like modality shares one tied table (`tie_sequence_tables`): with the 4.6k world vocabulary, separate
tables would be 14M parameters alone.
Masking: 4M-21's mixture of Dirichlets (all-to-all, RGB-to-all on RGB tokens, caption-biased), 128 input and
128 target tokens per sample, inputs and targets across every modality.
"""

import os

from polymodal.config import DataConfig, ExperimentConfig, MaskingConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.data.sources import TokenSource


def config() -> ExperimentConfig:
    path = os.environ.get("POLYMODAL_TOKENS", "data/world64_tokens")
    src = TokenSource(path)  # registers the stored tok_* modalities; fails clearly when not a token dataset
    specs = src.info["modalities"]
    names = tuple(specs)
    vocab = {n: s["spec"]["vocab_size"] for n, s in specs.items() if s["spec"]["kind"] == "sequence"}
    return ExperimentConfig(
        objective="fourm",
        model=ModelConfig.preset("tiny", domains_in=names, domains_out=names, vocab_sizes=vocab, dim=240,
                                 encoder_depth=4, decoder_depth=3, num_heads=4, tie_sequence_tables=True),
        masking=MaskingConfig(num_input_tokens=128, num_target_tokens=128, mixture="4m21"),
        data=DataConfig(source="tokens", path=path, val_samples=256, workers=1, shuffle_buffer=2000),
        optim=OptimConfig(base_lr=8e-3, warmup=0.05, final_lr=1e-5, weight_decay=0.05),
        train=TrainConfig(out_dir="runs/fourm_world64", steps=3000, batch_size=64, log_every=10,
                          eval_every=250, save_every=50),
    )
