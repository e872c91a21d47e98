"""The 4M encoder-decoder.

Data flow for a `Batch` (shapes for batch B, model width D):

1. Every input modality embeds its input positions: content ``x`` and position+modality ``emb``. They are
   concatenated and packed so that each sample's valid tokens come first: (B, E, D), E = largest input count.
2. Encoder: blocks over ``x + emb`` (padding masked as keys), then ``encoder_norm``.
3. Context = ``decoder_proj_context(encoder output) + emb`` (positions added back for the decoder).
4. Decoder queries per target modality: ``mask_token + pos + mod`` at image targets; teacher-forced shifted tokens
   for sequences. Self-attention stays inside a modality (full for images, causal for sequences), cross-attention
   reads the whole context. Then ``decoder_norm`` and the modality's ``to_logits``.

Only target positions are decoded and only their logits computed. Losses live in `model.loss`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..data.batch import Batch, validate_tokens
from ..nn import DecoderBlock, EncoderBlock, Segment, key_padding_mask
from .embeddings import DECODER_HEADS, ENCODER_EMBEDDINGS, Embedded, Queries, take


class TargetLogits(NamedTuple):
    """One target modality's predictions. Query rows (B, T) are in ascending position order per sample and padded
    to the batch's largest count; logits exist only for the valid rows, packed in (sample, row) order, because
    padding rows can be most of (B, T) and the vocabulary projection and its softmax are the costly part."""

    logits: torch.Tensor | None  # (n, V) for the n valid rows: logits[k] belongs to the k-th True of ``valid``
    targets: torch.Tensor  # (B, T) int64 ids to predict (0 on padding rows)
    valid: torch.Tensor  # (B, T) bool, False on padding rows
    positions: torch.Tensor  # (B, T) int64 position of each predicted token in the modality's values
    # With ``forward(..., logits=False)``: no logits; the loss projects these (n, D) rows with the (V, D) head
    # weight fused with its cross-entropy (`model.loss.linear_cross_entropy`).
    hidden: torch.Tensor | None = None
    head: torch.Tensor | None = None

    @property
    def target_ids(self) -> torch.Tensor:
        """(n,) the ids that ``logits`` predict, row for row."""
        return self.targets[self.valid]

    def dense(self) -> torch.Tensor:
        """(B, T, V) logits with zeros on padding rows."""
        b, t = self.valid.shape
        out = self.logits.new_zeros(b, t, self.logits.shape[-1])
        out[self.valid] = self.logits
        return out


class EncoderState(NamedTuple):
    context: torch.Tensor  # (B, E, D): projected encoder output + position/modality embeddings
    valid: torch.Tensor  # (B, E) bool


def _pack(parts: list[Embedded]) -> Embedded:
    """Concatenate per-modality tokens and move each sample's valid ones to the front, dropping all-pad columns."""
    x = torch.cat([p.x for p in parts], dim=1)
    emb = torch.cat([p.emb for p in parts], dim=1)
    valid = torch.cat([p.valid for p in parts], dim=1)
    if bool(valid.all()):
        return Embedded(x, emb, valid)
    counts = valid.sum(dim=1)
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, : int(counts.max())]
    return Embedded(take(x, order), take(emb, order), take(valid, order))


class FourM(nn.Module):
    def __init__(self, config: ModelConfig, *, image_decoder_token_tables: bool = False):
        """``image_decoder_token_tables`` keeps the unused decoder token tables that official 4M files hold."""
        super().__init__()
        self.config = cfg = config
        d = cfg.dim
        self.encoder_embeddings = nn.ModuleDict()
        for name in cfg.domains_in:
            mod = cfg.modality(name)
            self.encoder_embeddings[name] = ENCODER_EMBEDDINGS[mod.kind](mod, d, init_std=cfg.init_std)
        self.decoder_embeddings = nn.ModuleDict()
        for name in cfg.domains_out:
            mod = cfg.modality(name)
            shared = (self.encoder_embeddings[name].mod_emb
                      if cfg.share_modality_embeddings and name in self.encoder_embeddings else None)
            kw = {"token_table": image_decoder_token_tables} if mod.kind.value == "image_tokens" else {}
            self.decoder_embeddings[name] = DECODER_HEADS[mod.kind](mod, d, mod_emb=shared, init_std=cfg.init_std,
                                                                    **kw)
        block_kw = dict(act=cfg.act, gated_mlp=cfg.gated_mlp, qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias,
                        mlp_bias=cfg.mlp_bias, norm_bias=cfg.norm_bias, qk_norm=cfg.qk_norm, norm_eps=cfg.norm_eps)
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.num_heads, cfg.mlp_hidden, **block_kw)
                                     for _ in range(cfg.encoder_depth))
        self.encoder_norm = nn.LayerNorm(d, eps=cfg.norm_eps, bias=cfg.norm_bias)
        # 4M gives this projection a bias even in its bias-free models.
        self.decoder_proj_context = nn.Linear(d, d, bias=True)
        self.decoder = nn.ModuleList(DecoderBlock(d, cfg.num_heads, cfg.mlp_hidden, **block_kw)
                                     for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d, eps=cfg.norm_eps, bias=cfg.norm_bias)
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * cfg.init_std)
        self.apply(self._init_module)
        if cfg.tie_sequence_tables:
            self._tie_sequence_tables()

    def _tie_sequence_tables(self) -> None:
        """Point every text-like modality's token tables and logits at one table per vocabulary size (after init,
        so the shared table keeps the embedding init)."""
        tables: dict[int, nn.Parameter] = {}
        for group in (self.encoder_embeddings, self.decoder_embeddings):
            for name, m in group.items():
                if self.config.modality(name).kind.value != "sequence":
                    continue
                for sub in (m.token_emb, getattr(m, "to_logits", None)):
                    if sub is not None:
                        sub.weight = tables.setdefault(sub.weight.shape[0], sub.weight)

    def _init_module(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=self.config.init_std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------ forward

    def check_batch(self, batch: Batch, *, check_ids: bool = True) -> None:
        """Raise a ValueError naming the modality if the batch does not fit this model."""
        cfg = self.config
        for name, tokens in batch.items():
            known = name in self.encoder_embeddings or name in self.decoder_embeddings
            if not known:
                raise ValueError(f"modality {name!r} is not a domain of this model (inputs: "
                                 f"{', '.join(cfg.domains_in)}; outputs: {', '.join(cfg.domains_out)})")
            if name not in self.encoder_embeddings and bool(tokens.is_input.any()):
                raise ValueError(f"modality {name!r} has input tokens but is not an input of this model")
            if name not in self.decoder_embeddings and bool(tokens.is_target.any()):
                raise ValueError(f"modality {name!r} has target tokens but is not an output of this model")
            validate_tokens(name, cfg.modality(name), tokens, check_ids=check_ids)

    def forward(self, batch: Batch, *, check: bool = True, logits: bool = True) -> dict[str, TargetLogits]:
        """Logits at every target position of every target modality in the batch.

        ``check=False`` skips validation (its id range check syncs with the device). ``logits=False`` leaves the
        vocabulary projection to the loss (``TargetLogits.hidden/head``): cheaper in training.
        """
        if check:
            self.check_batch(batch)
        return self.decode(batch, self.encode(batch), logits=logits)

    def encode(self, batch: Batch) -> EncoderState:
        parts = [emb(batch[name]) for name, emb in self.encoder_embeddings.items()
                 if name in batch and batch[name].is_input.shape[1] > 0]
        parts = [p for p in parts if p.x.shape[1] > 0]
        if not parts:
            raise ValueError("the batch has no input tokens: 4M needs at least one input token per sample")
        x, emb, valid = _pack(parts)
        h = x + emb
        key_mask = key_padding_mask(valid)
        for block in self.encoder:
            h = block(h, key_mask)
        h = self.encoder_norm(h)
        return EncoderState(self.decoder_proj_context(h) + emb, valid)

    def queries(self, batch: Batch, domains: list[str] | None = None) -> dict[str, Queries]:
        """Decoder queries of every target modality (or of ``domains``) that has target tokens."""
        names = domains if domains is not None else list(self.decoder_embeddings)
        out = {}
        for name in names:
            if name in batch:
                q = self.decoder_embeddings[name](batch[name], self.mask_token)
                if q.x.shape[1] > 0:
                    out[name] = q
        return out

    def decode(self, batch: Batch, enc: EncoderState, domains: list[str] | None = None, *,
               logits: bool = True) -> dict[str, TargetLogits]:
        """Two layouts, the same result: without padding, each modality is a contiguous segment with its own
        attention call; with padding (counts differ between samples, the usual case in training), each sample's
        queries are packed to the front, so no compute goes to padding rows, and one block-diagonal mask keeps
        attention inside each modality (causal inside sequences)."""
        queries = self.queries(batch, domains)
        if not queries:
            return {}
        names = list(queries)
        causal = [self.decoder_embeddings[n].causal for n in names]
        x = torch.cat([q.x for q in queries.values()], dim=1)
        valid = torch.cat([q.valid for q in queries.values()], dim=1)
        if bool(valid.all()):
            segments, start = [], 0
            for q, c in zip(queries.values(), causal):
                segments.append(Segment(start, start + q.x.shape[1], causal=c))
                start += q.x.shape[1]
            h = self.run_decoder(x, enc, segments=segments)
            parts = torch.split(h, [q.x.shape[1] for q in queries.values()], dim=1)
            rows = {n: p.reshape(-1, p.shape[-1]) for n, p in zip(names, parts)}
        else:
            mod = torch.cat([torch.full_like(q.valid, i, dtype=torch.long) for i, q in enumerate(queries.values())],
                            dim=1)
            order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, : int(valid.sum(1).max())]
            x, valid, mod = take(x, order), take(valid, order), take(mod, order)
            h = self.run_decoder(x, enc, self_mask=self._packed_mask(mod, valid, causal))
            rows = {n: h[(mod == i) & valid] for i, n in enumerate(names)}
        heads = {n: self.decoder_embeddings[n].to_logits for n in names}
        if not logits:
            return {n: TargetLogits(None, q.targets, q.valid, q.positions, rows[n], heads[n].weight)
                    for n, q in queries.items()}
        return {n: TargetLogits(heads[n](rows[n]), q.targets, q.valid, q.positions) for n, q in queries.items()}

    @staticmethod
    def _packed_mask(mod: torch.Tensor, valid: torch.Tensor, causal: list[bool]) -> torch.Tensor:
        """(B, 1, Q, Q) self-attention mask of packed queries: same modality, valid keys, causal for sequences
        (packing is stable, so a sequence's queries keep their order). The diagonal keeps padding rows finite."""
        q = mod.shape[1]
        mask = (mod[:, :, None] == mod[:, None, :]) & valid[:, None, :]
        is_causal = torch.tensor(causal, device=mod.device)[mod]  # (B, Q) per query row
        tril = torch.ones(q, q, dtype=torch.bool, device=mod.device).tril()
        mask &= ~is_causal[:, :, None] | tril
        mask |= torch.eye(q, dtype=torch.bool, device=mod.device)
        return mask[:, None]

    def run_decoder(self, x: torch.Tensor, enc: EncoderState, *, segments: list[Segment] | None = None,
                    self_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder blocks on queries x (B, Q, D), split into ``segments`` or masked by ``self_mask``
        (B, 1, Q, Q); returns normed states (B, Q, D)."""
        context_mask = key_padding_mask(enc.valid)
        for block in self.decoder:
            x = block(x, enc.context, segments=segments, self_mask=self_mask, context_mask=context_mask)
        return self.decoder_norm(x)

    # ---------------------------------------------------------------------------------------- save/load

    def num_params(self, *, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def save_pretrained(self, path: str | Path) -> Path:
        from .checkpoint import save_folder

        return save_folder(self, path)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, *, dtype: torch.dtype | None = None,
                        strict: bool = True, revision: str | None = None) -> FourM:
        """Load a polymodal folder or an official 4M folder (``config.json`` + ``model.safetensors``).

        A Hub repo id (``EPFL-VILAB/4M-21_XL``, ``owner/name@revision`` or ``revision=``) resolves through the
        Hub cache, downloading where a network is allowed (`polymodal.hub.resolve`: ``HF_HUB_OFFLINE``,
        ``HF_HUB_CACHE``).
        """
        from .checkpoint import load_folder

        return load_folder(path_or_id, dtype=dtype, strict=strict, revision=revision)
