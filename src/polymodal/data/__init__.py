"""Batches, masking, the synthetic world, shards and loaders."""

from .batch import Batch, ModalityTokens

__all__ = ["Batch", "ModalityTokens"]
