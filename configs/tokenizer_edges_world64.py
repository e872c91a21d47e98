"""Canny-edge tokenizer of the synthetic world at 64 px: 8x8 tokens, 256 codes, tiny ViT VQ-VAE.
(For SAM edges use name="tok_sam_edge@64": the tokenizer reads the sample key its name gives.)

Command:   polymodal tokenizer train configs/tokenizer_edges_world64.py [train.out_dir=runs/tok_edges64]
Hardware:  one CPU core (OMP_NUM_THREADS=1 is fastest for a model this small when the cores are shared).
Time:      135 s for 600 steps of 32 edge maps (measured 2026-11-29 on 2 shared cores busy with a dataset
           synthesis and another training: OMP_NUM_THREADS=1 nice -n 10 polymodal tokenizer train ...).
Expect:    held-out PSNR of decode(encode(x)) about 10.3 dB (val/psnr: 9.9, 10.2, 10.3 at steps 200/400/600) and
           edge F1 about 0.34 (val/edge_f1, 1-pixel tolerance, threshold 0.5: 0.004, 0.20, 0.34): precision 0.99
           but recall 0.21, the MSE-trained decoder draws only the surest of the dense 64 px Canny edges (~16 % of
           pixels) and leaves the rest faint, under 0.5. Codebook usage 0.996 (perplexity ~186 of 256 codes).
"""

from polymodal.config import DataConfig, ExperimentConfig, OptimConfig, TrainConfig
from polymodal.tokenizers.vqvae import VQVAEConfig


def config() -> ExperimentConfig:
    return ExperimentConfig(
        objective="tokenizer",
        model=VQVAEConfig("edge", name="tok_canny_edge@64", image_size=64, patch_size=8, dim=64, codebook_size=256,
                          code_dim=16, ema_decay=0.95),
        data=DataConfig(source="world", num_samples=2000, val_samples=64, seed=0),
        optim=OptimConfig(base_lr=1.6e-2, warmup=0.05, final_lr=1e-5, weight_decay=0.0),
        train=TrainConfig(out_dir="runs/tok_edges_world64", steps=600, batch_size=32, log_every=20,
                          eval_every=200, save_every=200),
    )
