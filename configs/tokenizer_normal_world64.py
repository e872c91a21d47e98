"""Surface-normal tokenizer of the synthetic world at 64 px: 8x8 tokens, 512 codes, tiny ViT VQ-VAE.

Command:   polymodal tokenizer train configs/tokenizer_normal_world64.py [train.out_dir=runs/tok_normal64]
Hardware:  one CPU core (OMP_NUM_THREADS=1 is fastest for a model this small when the cores are shared).
Time:      76 s for 600 steps of 32 normal maps (measured 2026-11-29 on 2 shared cores busy with a dataset
           synthesis: OMP_NUM_THREADS=1 nice -n 10 polymodal tokenizer train ... train.progress=false).
Expect:    held-out angular error of decode(encode(x)) about 8.3 deg (val/angle_deg: 11.4 at step 200, 8.9 at 400,
           8.3 at 600), codebook usage 0.98 (perplexity ~375 of 512 codes).
"""

from polymodal.config import DataConfig, ExperimentConfig, OptimConfig, TrainConfig
from polymodal.tokenizers.vqvae import VQVAEConfig


def config() -> ExperimentConfig:
    return ExperimentConfig(
        objective="tokenizer",
        model=VQVAEConfig("normal", name="tok_normal@64", image_size=64, patch_size=8, dim=64, codebook_size=512,
                          code_dim=16, ema_decay=0.95),
        data=DataConfig(source="world", num_samples=2000, val_samples=64, seed=0),
        optim=OptimConfig(base_lr=1.6e-2, warmup=0.05, final_lr=1e-5, weight_decay=0.0),
        train=TrainConfig(out_dir="runs/tok_normal_world64", steps=600, batch_size=32, log_every=20,
                          eval_every=200, save_every=200),
    )
