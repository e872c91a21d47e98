"""The patched UNet of 4M's DiVAE tokenizers: the denoiser of their diffusion decoders.

An ADM-style UNet (Dhariwal & Nichol 2021) run on a patched image: the noisy image (B, C, H, W) is folded into
(B, C*p*p, H/p, W/p) (p = 4, pixel-unshuffle), the token codes (B, D, h, w) are upsampled (nearest) to that grid
and concatenated as extra channels, and the UNet predicts (B, C*p*p, H/p, W/p), unfolded back to (B, C, H, W).
The released decoders predict the clean image x0 (``prediction_type: sample``).

The UNet: a 3x3 stem conv, then per level ``num_res_blocks`` residual blocks (GroupNorm(32) - SiLU - conv, plus
a projection of the timestep embedding, GroupNorm - SiLU - conv, 1x1 skip when the width changes), each followed
by single-head self-attention when the level's downsampling factor is in ``attention_resolutions``; a strided
conv between levels. A middle res - attention - res block; then the mirror image with one extra block per level,
each reading the concatenated skip of its input-side twin, and a nearest x2 + conv upsample. GroupNorm - SiLU -
conv out. The released size (``UNetConfig.released``): width 256, multipliers (1, 2, 2, 2), 3 blocks per level,
attention at 4x and 8x downsampling; 224 px -> a 56x56 grid, attention at 14x14 and 7x7.

Weights load from the reference's state dict (``official_state_dict``); `config_from_official` reads every size
from the tensors' shapes, so a checkpoint of any width, depth or level count loads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ...nn.linear import Linear

GROUPS = 32  # GroupNorm groups, as the reference's normalization()


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of a patched UNet. ``in_channels`` are image channels (1 depth / edges, 3 rgb / normals),
    ``cond_channels`` the code dimension of the tokens it is conditioned on."""

    in_channels: int
    cond_channels: int
    patch_size: int = 4
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (4, 8)
    num_heads: int = 1

    @classmethod
    def released(cls, in_channels: int, cond_channels: int = 32) -> UNetConfig:
        """The size of the released 4M DiVAE decoders (``unet_patched``)."""
        return cls(in_channels, cond_channels)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(m * self.model_channels for m in self.channel_mult)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(N,) timesteps -> (N, dim) sinusoids, cosines first: [cos(t w_i), sin(t w_i)], w_i = P^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activations' dtype (as the reference's), so a bfloat16 UNet
    keeps its statistics exact."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


class ResBlock(nn.Module):
    """x (B, C_in, H, W), act_emb (B, E) = SiLU(time embedding) -> (B, C_out, H, W)."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = GroupNorm32(GROUPS, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = Linear(emb_dim, cout)
        self.norm2 = GroupNorm32(GROUPS, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(act_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))  # dropout of the reference: 0, and off at inference anyway
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the H*W positions of (B, C, H, W), with a residual; heads split the reference's
    "legacy" way (each head's q, k, v are adjacent in the qkv channels)."""

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention: {channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(GROUPS, channels)
        self.qkv = Linear(channels, 3 * channels)
        self.proj = Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, C, H, W) -> (B, T, C): a free view when x is channels-last, which is how the UNet runs on CPU.
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        qkv = self.qkv(tokens).unflatten(-1, (self.num_heads, 3, c // self.num_heads))  # (B, T, heads, 3, ch)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, heads, T, ch)
        out = F.scaled_dot_product_attention(q, k, v)  # scale ch^-1/2, as the reference's two ch^-1/4
        out = self.proj(out.transpose(1, 2).flatten(2))  # (B, T, C)
        return x + out.transpose(1, 2).unflatten(2, (h, w))


class Block(nn.Module):
    """One step of the UNet: a residual block, then optional attention, then an optional x2 upsample."""

    def __init__(self, cin: int, cout: int, emb_dim: int, *, attn: bool, heads: int, up: bool = False):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim)
        self.attn = Attention(cout, heads) if attn else None
        self.up = nn.Conv2d(cout, cout, 3, padding=1) if up else None

    def forward(self, x: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, act_emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.up is not None:
            x = self.up(F.interpolate(x, scale_factor=2, mode="nearest"))
        return x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PatchedUNet(nn.Module):
    """``forward(sample (B, C, H, W), t (B,) or (), cond (B, D, h, w)) -> (B, C, H, W)`` (the x0 prediction).

    H and W must be multiples of ``patch_size * 2**(levels - 1)`` (56 and 224 are, for the released size). Runs
    in the dtype of its weights (``.to(torch.bfloat16)`` for bfloat16; GroupNorm stays float32) and returns float32.
    Any memory layout; `DiVAE` keeps it channels-last (see benchmarks/divae_decode.py for what that is worth)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, p, heads = cfg.model_channels, cfg.patch_size, cfg.num_heads
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(Linear(mc, emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
        ch = cfg.widths[0]
        self.stem = nn.Conv2d(cfg.in_channels * p * p + cfg.cond_channels, ch, 3, padding=1)
        skip_chans, ds = [ch], 1
        self.down = nn.ModuleList()
        for level, width in enumerate(cfg.widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(Block(ch, width, emb_dim, attn=ds in cfg.attention_resolutions, heads=heads))
                ch = width
                skip_chans.append(ch)
            if level < len(cfg.widths) - 1:
                self.down.append(Downsample(ch))
                skip_chans.append(ch)
                ds *= 2
        self.mid = nn.ModuleList([Block(ch, ch, emb_dim, attn=True, heads=heads), Block(ch, ch, emb_dim, attn=False,
                                                                                        heads=heads)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(cfg.widths))):
            width = cfg.widths[level]
            for i in range(cfg.num_res_blocks + 1):
                up = level > 0 and i == cfg.num_res_blocks
                self.up.append(Block(ch + skip_chans.pop(), width, emb_dim, attn=ds in cfg.attention_resolutions,
                                     heads=heads, up=up))
                ch = width
                ds //= 2 if up else 1
        self.out_norm = GroupNorm32(GROUPS, ch)
        self.out_conv = nn.Conv2d(ch, cfg.in_channels * p * p, 3, padding=1)

    def forward(self, sample: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        if sample.shape[-1] % p or sample.shape[-2] % p:
            raise ValueError(f"patched UNet: image size {tuple(sample.shape[-2:])} is not a multiple of patch {p}")
        t = torch.as_tensor(t, device=sample.device).reshape(-1)  # () or (B,) -> (1,) or (B,), broadcast below
        dtype = self.stem.weight.dtype
        act_emb = F.silu(self.time_embed(timestep_embedding(t, self.cfg.model_channels).to(dtype)))
        x = F.pixel_unshuffle(sample.to(dtype), p)  # b c (nh ph) (nw pw) -> b (c ph pw) nh nw
        cond = F.interpolate(cond.to(x.dtype), size=x.shape[-2:], mode="nearest")
        h = self.stem(torch.cat([x, cond], dim=1))
        skips = [h]
        for block in self.down:
            h = block(h, act_emb)
            skips.append(h)
        h = self.mid[0](h, act_emb)
        h = self.mid[1](h, act_emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), act_emb)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(h, p).float()


# ------------------------------------------------------------------------------ the reference's weights

# Renames of the reference's keys, applied in order to each key (its blocks are positional nn.Sequentials).
_RES = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "emb_proj."),
        ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "skip.")]


def _rename(key: str) -> str:
    """One reference key -> ours. Its blocks are positional: input block i holds [res, attention?] or [down conv
    ``op``]; output block i [res, attention?, upsample ``conv``?]; the middle block [res, attention, res]."""
    for old, new in (("input_blocks.0.0.", "stem."), ("out.0.", "out_norm."), ("out.2.", "out_conv.")):
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"(input_blocks|output_blocks|middle_block)\.(\d+)\.(.*)", key)
    if m is None:
        return key
    group, i, rest = m.group(1), int(m.group(2)), m.group(3)
    if group == "middle_block":
        prefix = ("mid.0.res.", "mid.0.attn.", "mid.1.res.")[i]
    else:
        j, rest = rest.split(".", 1)
        block = f"down.{i - 1}." if group == "input_blocks" else f"up.{i}."
        if rest.startswith(("op.", "conv.")):  # the down / up convolution
            prefix, rest = block + ("conv." if group == "input_blocks" else "up."), rest.split(".", 1)[1]
        else:
            prefix = block + ("res." if j == "0" else "attn.")
    for old, new in _RES:
        if rest.startswith(old):
            rest = new + rest[len(old):]
    return prefix + rest.replace("proj_out.", "proj.")


def official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference UNet's state dict (keys without the ``decoder.`` prefix) -> `PatchedUNet`'s: renamed keys,
    the attention's 1x1 Conv1d weights (out, in, 1) as Linear weights (out, in)."""
    out = {}
    for key, value in state.items():
        name = _rename(key)
        if ".attn." in name and value.ndim == 3:
            value = value[..., 0]
        out[name] = value
    return out


def official_names(keys: Iterable[str]) -> dict[str, str]:
    """Reference UNet keys (without ``decoder.``) by the `PatchedUNet` name `official_state_dict` gives them: ours ->
    the file's, for errors that name a tensor as the file does."""
    return {_rename(key): key for key in keys}


def reference_name(key: str, keys: Collection[str]) -> str:
    """The reference's key of `PatchedUNet` key ``key`` (the inverse of `_rename`), for naming a tensor a file
    lacks; ``keys`` are the model's, which say whether an up block has attention (its upsampling conv then sits
    third, else second)."""
    for new, old in (("stem.", "input_blocks.0.0."), ("out_norm.", "out.0."), ("out_conv.", "out.2.")):
        if key.startswith(new):
            return old + key[len(new):]
    m = re.match(r"(down|up|mid)\.(\d+)\.(res|attn|conv|up)\.(.*)", key)
    if m is None:
        return key
    group, i, part, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if part == "attn" and rest.startswith("proj."):
        rest = "proj_out." + rest[len("proj."):]
    for old, new in _RES:
        if rest.startswith(new):
            rest = old + rest[len(new):]
    if group == "mid":
        return f"middle_block.{2 * i + (part == 'attn')}.{rest}"
    if group == "down":
        return f"input_blocks.{i + 1}.{'0.op' if part == 'conv' else '1' if part == 'attn' else '0'}.{rest}"
    if part == "up":
        return f"output_blocks.{i}.{2 if any(k.startswith(f'up.{i}.attn.') for k in keys) else 1}.conv.{rest}"
    return f"output_blocks.{i}.{1 if part == 'attn' else 0}.{rest}"


def config_from_official(state: dict[str, torch.Tensor], in_channels: int, *, num_heads: int = 1) -> UNetConfig:
    """Read a `UNetConfig` from the reference UNet's state dict (keys without ``decoder.``): width from the time
    MLP, levels and blocks per level from the input blocks, attention resolutions from where qkv weights sit,
    patch size from the output conv. ``num_heads`` is not in the shapes (the released UNets use 1)."""
    try:
        mc = state["time_embed.0.weight"].shape[1]
        stem_in = state["input_blocks.0.0.weight"].shape[1]
        out_ch = state["out.2.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"not a patched-UNet state dict: no {e.args[0]}") from None
    p = math.isqrt(out_ch // in_channels)
    if p * p * in_channels != out_ch:
        raise ValueError(f"patched UNet: output conv has {out_ch} channels, not {in_channels} x a square patch")
    widths: list[int] = []
    attention: set[int] = set()
    blocks_per_level: list[int] = [0]
    i, ds = 1, 1
    while f"input_blocks.{i}.0.op.weight" in state or f"input_blocks.{i}.0.in_layers.2.weight" in state:
        if f"input_blocks.{i}.0.op.weight" in state:
            blocks_per_level.append(0)
            ds *= 2
        else:
            width = state[f"input_blocks.{i}.0.in_layers.2.weight"].shape[0]
            if blocks_per_level[-1] == 0:
                widths.append(width)
            blocks_per_level[-1] += 1
            if f"input_blocks.{i}.1.qkv.weight" in state:
                attention.add(ds)
        i += 1
    if len(set(blocks_per_level)) != 1 or len(widths) != len(blocks_per_level):
        raise ValueError(f"patched UNet: levels with different block counts {blocks_per_level}")
    if any(w % mc for w in widths):
        raise ValueError(f"patched UNet: level widths {widths} are not multiples of the base width {mc}")
    return UNetConfig(in_channels=in_channels, cond_channels=stem_in - in_channels * p * p, patch_size=p,
                      model_channels=mc, channel_mult=tuple(w // mc for w in widths),
                      num_res_blocks=blocks_per_level[0], attention_resolutions=tuple(sorted(attention)),
                      num_heads=num_heads)
