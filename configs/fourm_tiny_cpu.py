"""4M masked modeling on the synthetic token world: the CPU smoke recipe the tests use.

Command:   polymodal train configs/fourm_tiny_cpu.py [train.steps=300 train.out_dir=runs/fourm_tiny_cpu]
Hardware:  one CPU core or more; also `torchrun --nproc_per_node 2 -m polymodal train configs/fourm_tiny_cpu.py`.
Time:      about a minute for 300 steps on 2 cores.
Expect:    training loss from ~3.9 to below 1.5; validation loss close to it (the world is tiny and regular).
"""

from polymodal.config import DataConfig, ExperimentConfig, MaskingConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.data import synthetic


def config() -> ExperimentConfig:
    return ExperimentConfig(
        objective="fourm",
        model=ModelConfig.preset("test", domains_in=synthetic.MODALITIES, domains_out=synthetic.MODALITIES),
        masking=MaskingConfig(num_input_tokens=48, num_target_tokens=48),
        data=DataConfig(source="synthetic_tokens", num_samples=20_000, val_samples=128, seed=0),
        optim=OptimConfig(base_lr=1e-2, warmup=0.05, final_lr=1e-5),
        train=TrainConfig(out_dir="runs/fourm_tiny_cpu", steps=300, batch_size=32, log_every=10, eval_every=100,
                          save_every=100),
    )
