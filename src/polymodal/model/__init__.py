"""The 4M encoder-decoder, its embeddings and heads, its loss, and its folders."""

from .fourm import EncoderState, FourM, TargetLogits
from .loss import masked_modeling_loss, modality_losses

__all__ = ["EncoderState", "FourM", "TargetLogits", "masked_modeling_loss", "modality_losses"]
