"""The training engine: one loop for every objective, torchrun DDP/FSDP2, checkpoints that resume exactly."""
