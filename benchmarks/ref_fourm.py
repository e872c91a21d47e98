"""The reference implementation's computation path for one 4M training step, re-implemented for benchmarks.

apple/ml-4m (package ``fourm``) cannot be installed here, so this module reproduces the *work* its ``FourM.forward``
does (fm.py, fm_utils.py, encoder_embeddings.py, decoder_embeddings.py), written independently. It is a yardstick,
not a library model: it exists so that ``benchmarks/train_step.py`` can time the same model computed the way the
reference computes it. The state dict is polymodal's (= 4M's names), so one set of weights drives both.

The costs it mirrors, in order (B batch, D width, O = all positions of all modalities, typically ~2,000 for the
4M-21 domains, while the token budgets are 128 + 128):

1. Every encoder embedding embeds **every** position of its modality: the pixel projection of all 196 patches,
   token tables over the whole grid or the whole (input span + target span) sequence tensor, ``emb_proj`` of every
   T5 vector. Sequences gather a position row per position from a batch-expanded table and zero it in place where
   the position is not an input.
2. ``cat_encoder_tensors``: content, pos+mod embeddings, masks and an int16 modality-id mask are concatenated over
   all modalities into (B, O, D) tensors. ``forward_mask_encoder`` argsorts ``mask + arange * 1e-6`` (float) over
   O, gathers the first ``num_encoder_tokens`` rows (a fixed budget: slots beyond a sample's count hold masked
   tokens) and zeroes those padding slots in place.
3. The decoder embeddings likewise embed every position of every output modality (token table lookups for image
   grids too, then replaced by ``zeros_like(x) + mask_token``); sequences are shifted by one (x[:, :-1],
   ids[:, 1:], mask = tm[1:] | tm[:-1]). Modalities are concatenated in a shuffled order to (B, O', D), argsorted
   and gathered to ``num_decoder_tokens`` slots; padding slots are zeroed in place.
4. The decoder self-attention mask is materialized as a (B, M, M) bool tensor from the compressed
   ``decoder_attention_mask`` (cumsum: full attention inside an image modality, causal inside a sequence) OR the
   modality-separation mask (mod_mask[i] != mod_mask[j]).
5. Attention is explicit: ``q @ k^T * scale``, ``masked_fill(mask, -finfo.max)``, softmax, ``@ v`` on
   (B, H, N, N) tensors, with a (B, 1, 1, N) key mask in the encoder and for cross-attention, and the (B, 1, M, M)
   mask in decoder self-attention. Every slot of the fixed budgets (padding included) goes through every block.
6. ``forward_mod_loss``: per output modality, boolean-index the decoder output at that modality's valid slots,
   ``to_logits`` on those rows only, mean cross-entropy; the loss is the mean over the output modalities.

Not mirrored (no cost in a training step at these settings): drop path, register tokens, ``decoder_causal_mask``.
Batches are the reference's ``mod_dict``: ``{name: {tensor, input_mask, target_mask, decoder_attention_mask}}``
with its mask polarity (True = not used); see `mod_dict_from_batch`.
"""

from __future__ import annotations

import random

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from polymodal.config import ModelConfig
from polymodal.data.batch import Batch
from polymodal.modalities import Kind, Modality

# ------------------------------------------------------------------------------------------------- layers


class RefLayerNorm(nn.Module):
    """LayerNorm that always passes a bias to ``F.layer_norm``; a bias-free one uses a zero buffer (as 4M does).

    The zero buffer is not persistent so the state dict matches polymodal's bias-free ``nn.LayerNorm``.
    """

    def __init__(self, dim: int, eps: float, bias: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        if bias:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_buffer("bias", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                        scale: float) -> torch.Tensor:
    """(B, H, N, d) x (B, H, M, d) -> (B, N, H*d). ``mask`` True = blocked, broadcast to (B, H, N, M)."""
    attn = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        attn = attn.masked_fill(mask, -torch.finfo(attn.dtype).max)
    attn = attn.softmax(dim=-1)
    out = attn @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


class RefSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D); mask (B, 1, N) key mask or (B, N, N) full mask, True = blocked."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(_explicit_attention(q, k, v, None if mask is None else mask.unsqueeze(1), self.scale))


class RefCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D), context (B, M, D), mask (B, 1, M) True = blocked."""
        b, n, d = x.shape
        m = context.shape[1]
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).permute(0, 2, 1, 3)
        k, v = self.kv(context).reshape(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(_explicit_attention(q, k, v, None if mask is None else mask.unsqueeze(1), self.scale))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, *, act: str, gated: bool, bias: bool):
        super().__init__()
        self.act = nn.SiLU() if act == "silu" else nn.GELU()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias) if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        return self.fc2(h * self.fc3(x) if self.fc3 is not None else h)


class RefBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.attn = RefSelfAttention(d, cfg.num_heads, qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias)
        self.norm2 = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.mlp = RefMlp(d, cfg.mlp_hidden, act=cfg.act, gated=cfg.gated_mlp, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class RefDecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        kw = dict(qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias)
        self.norm1 = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.self_attn = RefSelfAttention(d, cfg.num_heads, **kw)
        self.query_norm = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.context_norm = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.cross_attn = RefCrossAttention(d, cfg.num_heads, **kw)
        self.norm2 = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.mlp = RefMlp(d, cfg.mlp_hidden, act=cfg.act, gated=cfg.gated_mlp, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, sa_mask: torch.Tensor,
                xa_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), sa_mask)
        x = x + self.cross_attn(self.query_norm(x), self.context_norm(context), xa_mask)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------------------------- embeddings


def _sincos_table(mod: Modality, dim: int) -> torch.Tensor:
    """Float32 sin-cos table like the reference builds it (load_state_dict replaces it with the file's)."""
    if mod.is_grid:
        rows, cols = mod.grid
        omega = 1.0 / 10000.0 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
        r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                              indexing="ij")
        ar, ac = r.reshape(-1, 1) * omega, c.reshape(-1, 1) * omega
        return torch.cat([ar.sin(), ar.cos(), ac.sin(), ac.cos()], dim=1)[None]
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    a = torch.arange(mod.pos_table_len, dtype=torch.float32)[:, None] * omega
    return torch.cat([a.sin(), a.cos()], dim=1)[None]


def _gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, P, D) at (B, L) -> (B, L, D), with an index expanded over D as the reference does."""
    return torch.gather(table, 1, idx[:, :, None].expand(-1, -1, table.shape[2]))


class RefEmbedding(nn.Module):
    """One modality's encoder embedding or decoder embedding + head (which parts exist depends on kind/side)."""

    def __init__(self, mod: Modality, dim: int, *, decoder: bool, mod_emb: nn.Parameter | None,
                 token_table: bool = True):
        super().__init__()
        self.modality = mod
        if mod.pos == "learned":
            self.pos_emb = nn.Parameter(torch.randn(1, mod.pos_len, dim) * 0.02)
        else:
            self.register_buffer("pos_emb", _sincos_table(mod, dim))
        self.mod_emb = mod_emb if mod_emb is not None else nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        if mod.kind is Kind.PIXELS:
            self.proj = nn.Linear(mod.channels * mod.patch_size**2, dim, bias=False)
        elif mod.kind is Kind.SEQUENCE_EMB:
            self.emb_proj = nn.Linear(mod.emb_dim, dim)
        elif token_table:
            self.token_emb = nn.Embedding(mod.vocab_size, dim)
        if decoder:
            self.to_logits = nn.Linear(dim, mod.vocab_size, bias=False)

    def _content(self, t: torch.Tensor) -> torch.Tensor:
        mod = self.modality
        if mod.kind is Kind.PIXELS:
            p = mod.patch_size
            return self.proj(rearrange(t, "b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)", ph=p, pw=p))
        if mod.kind is Kind.SEQUENCE_EMB:
            return self.emb_proj(t)
        return self.token_emb(t.reshape(t.shape[0], -1))

    def _ranked_pos(self, unused: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        """Sequence positions: rank among used slots, gathered per slot, zeroed in place where unused."""
        b = unused.shape[0]
        pos_id = (~unused).int().cumsum(dim=1) - 1
        pos_id[unused] = 0
        if limit is not None:
            pos_id[pos_id >= limit] = 0
        pos = _gather_rows(self.pos_emb.expand(b, -1, -1), pos_id.long())
        pos[unused] = 0
        return pos

    def encode(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every position: 'x' content (B, N, D) and 'emb' pos+mod (B, N, D)."""
        t = d["tensor"]
        x = self._content(t)
        if self.modality.is_sequence_like:
            emb = self._ranked_pos(d["input_mask"]) + self.mod_emb
        else:
            emb = (self.pos_emb + self.mod_emb).expand(t.shape[0], -1, -1)
        return {**d, "x": x, "emb": emb}

    def embed_targets(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decoder side, every position: 'x' (token lookups), 'emb', 'ids'."""
        t = d["tensor"]
        ids = t.reshape(t.shape[0], -1)
        if hasattr(self, "token_emb"):
            x = self.token_emb(ids)
        else:  # a file without the unused image decoder table: the reference would have looked it up here
            x = torch.zeros(*ids.shape, self.mod_emb.shape[-1], dtype=self.mod_emb.dtype, device=ids.device)
        if self.modality.is_sequence_like:
            emb = self._ranked_pos(d["target_mask"], self.modality.decoder_pos_limit) + self.mod_emb
        else:
            emb = (self.pos_emb + self.mod_emb).expand(ids.shape[0], -1, -1)
        return {**d, "x": x, "emb": emb, "ids": ids}


# ------------------------------------------------------------------------------------------------- model


class RefFourM(nn.Module):
    """The 4M encoder-decoder computed the reference's way; ``forward`` returns (loss, per-modality losses)."""

    def __init__(self, config: ModelConfig, *, image_decoder_token_tables: bool = False, seed: int = 0):
        super().__init__()
        self.config = cfg = config
        d = cfg.dim
        self.mod_ids = {n: cfg.modality(n).id for n in (*cfg.domains_in, *cfg.domains_out)}
        self.encoder_embeddings = nn.ModuleDict(
            {n: RefEmbedding(cfg.modality(n), d, decoder=False, mod_emb=None) for n in cfg.domains_in})
        self.decoder_embeddings = nn.ModuleDict()
        for n in cfg.domains_out:
            mod = cfg.modality(n)
            shared = (self.encoder_embeddings[n].mod_emb
                      if cfg.share_modality_embeddings and n in self.encoder_embeddings else None)
            table = mod.kind is not Kind.IMAGE_TOKENS or image_decoder_token_tables
            self.decoder_embeddings[n] = RefEmbedding(mod, d, decoder=True, mod_emb=shared, token_table=table)
        self.encoder = nn.ModuleList(RefBlock(cfg) for _ in range(cfg.encoder_depth))
        self.encoder_norm = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.decoder_proj_context = nn.Linear(d, d)
        self.decoder = nn.ModuleList(RefDecoderBlock(cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = RefLayerNorm(d, cfg.norm_eps, cfg.norm_bias)
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self._rng = random.Random(seed)  # the reference shuffles the decoder's modality order every step

    @classmethod
    def from_polymodal(cls, model: nn.Module) -> RefFourM:
        """The same weights as a polymodal `FourM` (strict load: every name and shape must match)."""
        tables = any(getattr(e, "token_emb", None) is not None for n, e in model.decoder_embeddings.items()
                     if model.config.modality(n).kind is Kind.IMAGE_TOKENS)
        ref = cls(model.config, image_decoder_token_tables=tables)
        ref.load_state_dict(model.state_dict(), strict=True)
        return ref

    # ------------------------------------------------------------------------------------ masking

    def _mask_encoder(self, enc: dict[str, dict], n_keep: int):
        names = list(enc)
        x_all = torch.cat([enc[n]["x"] for n in names], dim=1)
        emb_all = torch.cat([enc[n]["emb"] for n in names], dim=1)
        mask_all = torch.cat([enc[n]["input_mask"] for n in names], dim=1)
        mod_all = torch.cat([torch.full_like(enc[n]["input_mask"], self.mod_ids[n], dtype=torch.int16)
                             for n in names], dim=1)
        keep = self._keep(mask_all, n_keep)
        x = _gather_rows(x_all, keep)
        emb = _gather_rows(emb_all, keep)
        mask = torch.gather(mask_all, 1, keep)
        mod_mask = torch.gather(mod_all, 1, keep)
        x[mask] = 0.0
        emb[mask] = 0.0
        mod_mask[mask] = -1
        return x, emb, mask[:, None, :], mod_mask

    @staticmethod
    def _keep(mask_all: torch.Tensor, n_keep: int) -> torch.Tensor:
        """Indices of the first ``n_keep`` used slots, unused ones after them, by a float argsort."""
        tie = torch.arange(mask_all.shape[1], device=mask_all.device)[None, :] * 1e-6
        return torch.argsort(mask_all + tie, dim=1)[:, :n_keep]

    def _mask_decoder(self, dec: dict[str, dict], n_keep: int):
        names = self._rng.sample(list(dec), len(dec))
        xs, embs, masks, ids, attn, mods = [], [], [], [], [], []
        for n in names:
            d = dec[n]
            if self.config.modality(n).kind is Kind.SEQUENCE:
                tm = d["target_mask"]
                xs.append(d["x"][:, :-1])
                ids.append(d["ids"][:, 1:])
                embs.append(d["emb"][:, :-1])
                masks.append(tm[:, 1:] | tm[:, :-1])
                attn.append(d["decoder_attention_mask"][:, :-1])
                mods.append(torch.full_like(d["ids"][:, :-1], self.mod_ids[n], dtype=torch.int16))
            else:
                xs.append(torch.zeros_like(d["x"]) + self.mask_token)
                ids.append(d["ids"])
                embs.append(d["emb"])
                masks.append(d["target_mask"])
                attn.append(d["decoder_attention_mask"])
                mods.append(torch.full_like(d["ids"], self.mod_ids[n], dtype=torch.int16))
        x_all, emb_all, mask_all = torch.cat(xs, 1), torch.cat(embs, 1), torch.cat(masks, 1)
        ids_all, attn_all, mod_all = torch.cat(ids, 1), torch.cat(attn, 1), torch.cat(mods, 1)
        keep = self._keep(mask_all, n_keep)
        x = _gather_rows(x_all, keep)
        emb = _gather_rows(emb_all, keep)
        mask = torch.gather(mask_all, 1, keep)
        target_ids = torch.gather(ids_all, 1, keep)
        attn = torch.gather(attn_all, 1, keep)
        mod_mask = torch.gather(mod_all, 1, keep)
        x[mask] = 0.0
        emb[mask] = 0.0
        target_ids[mask] = 0
        sa_mask = self._decoder_attention_mask(attn, mod_mask)
        mod_mask[mask] = -1
        return x, emb, target_ids, sa_mask, mod_mask

    @staticmethod
    def _decoder_attention_mask(compressed: torch.Tensor, mod_mask: torch.Tensor) -> torch.Tensor:
        """(B, M) compressed counts -> (B, M, M) True = blocked: key j is visible to row i iff j < cumsum_i and
        both belong to the same modality (image targets see each other, sequence targets see earlier ones)."""
        b, m = compressed.shape
        arange = torch.arange(m, device=compressed.device).expand(b, m, m)
        blocked = arange >= torch.cumsum(compressed, dim=-1)[:, :, None]
        return blocked | (mod_mask[:, None, :] != mod_mask[:, :, None])

    # ------------------------------------------------------------------------------------ forward

    def _decoder_output(self, mod_dict: dict[str, dict], num_encoder_tokens: int, num_decoder_tokens: int):
        enc = {n: self.encoder_embeddings[n].encode(d) for n, d in mod_dict.items() if n in self.encoder_embeddings}
        x, enc_emb, enc_mask, _ = self._mask_encoder(enc, num_encoder_tokens)
        dec = {n: self.decoder_embeddings[n].embed_targets(d) for n, d in mod_dict.items()
               if n in self.decoder_embeddings}
        y, dec_emb, target_ids, sa_mask, dec_mod_mask = self._mask_decoder(dec, num_decoder_tokens)
        x = x + enc_emb
        for blk in self.encoder:
            x = blk(x, enc_mask)
        x = self.encoder_norm(x)
        context = self.decoder_proj_context(x) + enc_emb
        y = y + dec_emb
        for blk in self.decoder:
            y = blk(y, context, sa_mask, enc_mask)
        return self.decoder_norm(y), target_ids, dec_mod_mask, list(dec)

    def forward(self, mod_dict: dict[str, dict], num_encoder_tokens: int, num_decoder_tokens: int
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reference's training forward with ``loss_type='mod'``: mean over output modalities of each one's
        mean token cross-entropy, logits computed only at each modality's valid decoder slots."""
        y, target_ids, mod_mask, names = self._decoder_output(mod_dict, num_encoder_tokens, num_decoder_tokens)
        losses = {}
        for n in names:
            sel = mod_mask == self.mod_ids[n]
            logits = self.decoder_embeddings[n].to_logits(y[sel])
            if logits.numel() == 0:
                losses[n] = torch.zeros(1, device=y.device)
            else:
                losses[n] = F.cross_entropy(logits, target_ids[sel].long())
        return sum(losses.values()) / len(losses), losses

    @torch.no_grad()
    def target_logits(self, mod_dict: dict[str, dict], num_encoder_tokens: int, num_decoder_tokens: int
                      ) -> dict[str, torch.Tensor]:
        """Per output modality: logits (K, V) at its valid decoder slots, sample-major, ascending position."""
        y, _, mod_mask, names = self._decoder_output(mod_dict, num_encoder_tokens, num_decoder_tokens)
        return {n: self.decoder_embeddings[n].to_logits(y[mod_mask == self.mod_ids[n]]) for n in names}


# ------------------------------------------------------------------------------------------- batches


def mod_dict_from_batch(batch: Batch, config: ModelConfig) -> dict[str, dict[str, torch.Tensor]]:
    """A polymodal `Batch` in the reference's format: inverted masks and the compressed decoder attention mask
    (image targets: their count at the first target position; sequence targets: 1 at every target position)."""
    out = {}
    for name, t in batch.items():
        mod = config.modality(name)
        tgt = t.is_target
        if mod.kind is Kind.IMAGE_TOKENS:
            first = torch.zeros_like(tgt, dtype=torch.int32)
            has = tgt.any(dim=1)
            first[has, tgt[has].int().argmax(dim=1)] = tgt[has].sum(dim=1, dtype=torch.int32)
            dam = first
        else:
            dam = tgt.int()
        out[name] = {"tensor": t.values, "input_mask": ~t.is_input, "target_mask": ~tgt,
                     "decoder_attention_mask": dam}
    return out


def num_decoder_slots(mod_dict: dict[str, dict[str, torch.Tensor]], config: ModelConfig) -> int:
    """The largest number of valid decoder slots of a sample (a budget that drops none)."""
    total = 0
    for name, d in mod_dict.items():
        if name not in config.domains_out:
            continue
        used = ~d["target_mask"]
        if config.modality(name).kind is Kind.SEQUENCE:
            used = used[:, 1:] & used[:, :-1]
        total = total + used.sum(dim=1)
    return int(total.max()) if torch.is_tensor(total) else 0


__all__ = ["RefFourM", "mod_dict_from_batch", "num_decoder_slots"]
