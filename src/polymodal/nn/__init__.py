"""Reusable layers: attention, MLPs, transformer blocks, position tables. Knows nothing of modalities."""

from .attention import CrossAttention, Segment, SelfAttention, key_padding_mask
from .blocks import DecoderBlock, EncoderBlock
from .mlp import Mlp
from .pos import sincos_1d, sincos_2d

__all__ = ["CrossAttention", "DecoderBlock", "EncoderBlock", "Mlp", "Segment", "SelfAttention",
           "key_padding_mask", "sincos_1d", "sincos_2d"]
