"""Reusable layers: attention, MLPs, transformer blocks, position tables, packing, caches. Knows nothing of
modalities."""

from .attention import ContextMask, CrossAttention, Segment, SelfAttention, context_mask, key_padding_mask
from .blocks import DecoderBlock, EncoderBlock
from .kv_cache import ContextKV, KVCache, LayerCache
from .mlp import Mlp
from .pack import pack_order, take
from .pos import sincos_1d, sincos_2d

__all__ = ["ContextKV", "ContextMask", "CrossAttention", "DecoderBlock", "EncoderBlock", "KVCache", "LayerCache",
           "Mlp", "Segment", "SelfAttention", "context_mask", "key_padding_mask", "pack_order", "sincos_1d",
           "sincos_2d", "take"]
