"""SAM-edge tokenizer of the synthetic world at 64 px (segment boundaries of instances and stuff, the new output
modality of scripts/transfer_world64.sh): 8x8 tokens, 256 codes, tiny ViT VQ-VAE, the Canny recipe with another
sample key.

Command:   polymodal tokenizer train configs/tokenizer_sam_edge_world64.py [train.out_dir=runs/tok_sam_edge64]
Hardware:  one CPU core.
Time:      255 s for 600 steps of 32 maps (measured 2026-12-06 beside a world synthesis and other agents' jobs,
           load 5-10 on 2 cores, OMP_NUM_THREADS=1).
Expect:    held-out decode(encode(x)) at step 600 (64 scenes): val/edge_f1 0.747 (precision 0.991, recall 0.599,
           1-pixel tolerance), PSNR 14.6 dB, codebook usage 0.996 (perplexity 145 of 256); 100 held-out world64_val
           scenes: edge F1 0.757, precision 0.991, recall 0.613 (the ceiling of the transfer curves).
"""

from polymodal.config import DataConfig, ExperimentConfig, OptimConfig, TrainConfig
from polymodal.tokenizers.vqvae import VQVAEConfig


def config() -> ExperimentConfig:
    return ExperimentConfig(
        objective="tokenizer",
        model=VQVAEConfig("edge", name="tok_sam_edge@64", image_size=64, patch_size=8, dim=64, codebook_size=256,
                          code_dim=16, ema_decay=0.95),
        data=DataConfig(source="world", num_samples=2000, val_samples=64, seed=0),
        optim=OptimConfig(base_lr=1.6e-2, warmup=0.05, final_lr=1e-5, weight_decay=0.0),
        train=TrainConfig(out_dir="runs/tok_sam_edge_world64", steps=600, batch_size=32, log_every=20,
                          eval_every=200, save_every=200),
    )
