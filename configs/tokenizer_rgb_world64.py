"""RGB tokenizer of the synthetic world at 64 px: 8x8 tokens (8 px patches), 512 codes, tiny ViT VQ-VAE.

Command:   polymodal tokenizer train configs/tokenizer_rgb_world64.py [train.out_dir=runs/tok_rgb64]
           (data.path=data/world64 reads a dataset from `polymodal data synth --out data/world64 --n 2000`;
           by default samples are rendered in memory, ~10 s per 1000 samples)
Hardware:  one CPU core (OMP_NUM_THREADS=1 is fastest for a model this small when the cores are shared).
Time:      about 70 s for 600 steps of 32 images (measured 69 s on one busy core, rendering included).
Expect:    held-out PSNR of decode(encode(x)) about 19.4 dB (val/psnr), codebook usage ~0.98 (perplexity ~400);
           the tokenizer folder is train.out_dir/release; reconstructions/ holds originals above reconstructions.
"""

from polymodal.config import DataConfig, ExperimentConfig, OptimConfig, TrainConfig
from polymodal.tokenizers.vqvae import VQVAEConfig


def model() -> VQVAEConfig:
    return VQVAEConfig("rgb", name="tok_rgb@64", image_size=64, patch_size=8, dim=64, encoder_depth=2,
                       decoder_depth=2, num_heads=4, codebook_size=512, code_dim=16, ema_decay=0.95)


def config() -> ExperimentConfig:
    return ExperimentConfig(
        objective="tokenizer",
        model=model(),
        data=DataConfig(source="world", num_samples=2000, val_samples=64, seed=0),
        optim=OptimConfig(base_lr=1.6e-2, warmup=0.05, final_lr=1e-5, weight_decay=0.0),
        train=TrainConfig(out_dir="runs/tok_rgb_world64", steps=600, batch_size=32, log_every=20, eval_every=200,
                          save_every=200),
    )
