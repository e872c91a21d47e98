"""The 4M encoder-decoder.

Data flow for a `Batch` (shapes for batch B, model width D):

1. Every input modality embeds its input positions: content ``x`` and position+modality ``emb``. They are
   concatenated and packed so that each sample's valid tokens come first: (B, E, D), E = largest input count.
2. Encoder: blocks over ``x + emb`` (padding masked as keys), then ``encoder_norm``.
3. Context = ``decoder_proj_context(encoder output) + emb`` (positions added back for the decoder).
4. Decoder queries per target modality: ``mask_token + pos + mod`` at image targets; teacher-forced shifted tokens
   for sequences. Self-attention stays inside a modality (full for images, causal for sequences), cross-attention
   reads the whole context. Then ``decoder_norm`` and the modality's head (`head`, `logits`).

Only target positions are decoded and only their logits computed. Losses live in `model.loss`.

Training (`forward`) and generation call the same entry points: `encode` (once per step, optionally for several
guidance passes at once), `decode` (image targets; teacher forcing), and for autoregressive decoding
`sequence_queries` + `run_decoder` with the cache from `new_cache`. A sample without any input token reads an
empty context (its cross-attention output is zero, `nn.context_mask`), as in ml-4m's unconditional passes.

The output heads live in ``decoder_embeddings`` (each module embeds a target's decoder queries and holds its
``to_logits``): the name is 4M's state-dict layout, which official files and every saved optimizer state use, so
it stays; `head(name)` is the accessor.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..data.batch import Batch, validate_tokens
from ..modalities import Kind
from ..nn import DecoderBlock, EncoderBlock, LayerCache, Segment, context_mask, key_padding_mask, pack_order, take
from ..nn.linear import Linear
from .embeddings import DECODER_HEADS, ENCODER_EMBEDDINGS, Embedded, Queries, select
from .features import EncoderFeatures, encoder_features


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


def _pad_tokens(t: torch.Tensor, width: int) -> torch.Tensor:
    """t (B, n, ...) zero-padded along its token dimension to (B, width, ...)."""
    return nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, width - t.shape[1]))


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
            kw = {"token_table": image_decoder_token_tables} if mod.kind is Kind.IMAGE_TOKENS else {}
            self.decoder_embeddings[name] = DECODER_HEADS[mod.kind](mod, d, mod_emb=shared, init_std=cfg.init_std,
                                                                    **kw)
        block_kw = dict(act=cfg.act, gated_mlp=cfg.gated_mlp, qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias,
                        mlp_bias=cfg.mlp_bias, norm_bias=cfg.norm_bias, qk_norm=cfg.qk_norm, norm_eps=cfg.norm_eps)
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.num_heads, cfg.mlp_hidden, **block_kw)
                                     for _ in range(cfg.encoder_depth))
        self.encoder_norm = nn.LayerNorm(d, eps=cfg.norm_eps, bias=cfg.norm_bias)
        # 4M gives this projection a bias even in its bias-free models.
        self.decoder_proj_context = Linear(d, d, bias=True)
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
                if self.config.modality(name).kind is not Kind.SEQUENCE:
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

    def encode(self, batch: Batch, *, passes: int = 1) -> EncoderState:
        """The encoder over the batch's input tokens: the decoder's context (B, E, D) and its valid rows (B, E).

        A batch without any input token gives an empty context (one invalid row per sample). ``passes`` P > 1:
        the batch holds P variants of B samples, stacked pass-major (guidance's conditional and unconditional
        passes, `generation.Guidance.passes`). The P passes of sample b then share one packed row of the encoder
        under a block-diagonal mask (a token attends only to its own pass), which costs the passes' token counts
        summed rather than P times the largest with padding (an unconditional pass has far fewer tokens); the
        context comes back as (P * B, E', D), pass-major.
        """
        parts = list(self.embed_inputs(batch).values())
        if not parts:
            return self._empty_context(batch.batch_size)
        x, emb, valid = (torch.cat(t, dim=1) for t in zip(*parts))
        if passes > 1:
            return self._encode_passes(x, emb, valid, passes)
        return self._encode_rows(x, emb, valid)

    def _encode_rows(self, x: torch.Tensor, emb: torch.Tensor, valid: torch.Tensor) -> EncoderState:
        """`encode` of embedded inputs x, emb (B, n, D) with valid (B, n): packed, masked, encoded."""
        fewest, most = torch.stack(valid.sum(dim=1).aminmax()).tolist()  # one device sync for both
        if most == 0:
            return self._empty_context(x.shape[0])
        if fewest < valid.shape[1]:  # pack each sample's valid tokens to the front, dropping all-padding columns
            order = pack_order(valid)
            x, emb, valid = take(x, order), take(emb, order), take(valid, order)
        mask = None if fewest == most else key_padding_mask(valid)
        return EncoderState(self._encoder(x + emb, mask) + emb, valid)

    def embed_inputs(self, batch: Batch) -> dict[str, Embedded]:
        """Each input modality of the batch that has input positions, embedded (in ``domains_in`` order)."""
        parts = {name: emb(batch[name]) for name, emb in self.encoder_embeddings.items()
                 if name in batch and batch[name].is_input.shape[1] > 0}
        return {name: p for name, p in parts.items() if p.x.shape[1] > 0}

    def _encoder(self, h: torch.Tensor, mask: torch.Tensor | None, segments: list[Segment] | None = None
                 ) -> torch.Tensor:
        """Encoder blocks, norm and context projection on tokens h (B, E, D) under an SDPA mask."""
        return self.decoder_proj_context(self.encoder_states(h, mask, segments))

    def encoder_states(self, h: torch.Tensor, mask: torch.Tensor | None, segments: list[Segment] | None = None
                       ) -> torch.Tensor:
        """Encoder blocks and ``encoder_norm`` on tokens h (B, E, D) under an SDPA mask (or attending only inside
        each of ``segments``): the encoder's own features (what ml-4m's encoder-only ``FMViT`` returns), before
        the decoder's context projection."""
        for block in self.encoder:
            h = block(h, mask) if segments is None else block(h, segments=segments)
        return self.encoder_norm(h)

    def encode_features(self, batch: Batch, *, check: bool = True) -> EncoderFeatures:
        """4M as an encoder: the features (B, N, D) of every input token of the batch, which modality and position
        each came from, and their mean (`model.features.EncoderFeatures`); targets are ignored."""
        if check:
            self.check_batch(batch)
        return encoder_features(self, batch)

    def _empty_context(self, batch_size: int) -> EncoderState:
        """No input token at all: one invalid context row per sample (cross-attention then reads nothing)."""
        ref = self.mask_token
        return EncoderState(ref.new_zeros(batch_size, 1, self.config.dim),
                            torch.zeros(batch_size, 1, dtype=torch.bool, device=ref.device))

    def _encode_passes(self, x: torch.Tensor, emb: torch.Tensor, valid: torch.Tensor, passes: int) -> EncoderState:
        """`encode` of P stacked passes (x, emb (P * B, n, D), valid (P * B, n)). One sample: its passes share one
        packed row, each attending inside its own run. Several: each pass is encoded as a batch of its own (on
        this CPU, one row per sample under a block-diagonal mask ran guided bf16 batches of 8 and 32 0.6-0.8x the
        reference's speed: (sum of counts)^2 masked scores per sample)."""
        if not bool(valid.any()):
            return self._empty_context(valid.shape[0])
        pb, n = valid.shape
        b = pb // passes
        if b > 1:
            states = [self._encode_rows(x[p * b:(p + 1) * b], emb[p * b:(p + 1) * b], valid[p * b:(p + 1) * b])
                      for p in range(passes)]
            width = max(s.valid.shape[1] for s in states)
            return EncoderState(torch.cat([_pad_tokens(s.context, width) for s in states]),
                                torch.cat([_pad_tokens(s.valid, width) for s in states]))
        side = lambda t: t.reshape(passes, b, n, *t.shape[2:]).transpose(0, 1).reshape(b, passes * n, *t.shape[2:])  # noqa: E731
        x, emb, valid = side(x), side(emb), side(valid)
        seg = torch.arange(passes, device=x.device).repeat_interleave(n).expand(b, -1)
        order = pack_order(valid)
        x, emb, valid, seg = take(x, order), take(emb, order), take(valid, order), take(seg, order)
        # one sample: its packed row is every pass's tokens, pass after pass, no padding. Attention inside each
        # pass's run (segments) computes what a block-diagonal mask gives, without the (sum of counts)^2 masked
        # scores: the guided passes' encoder ran ~1.8x the attention a pass alone needs.
        counts = torch.stack([(seg == p).sum() for p in range(passes)]).tolist()
        ends = torch.tensor(counts).cumsum(0).tolist()
        segments = [Segment(e - c, e) for c, e in zip(counts, ends) if c > 0]
        ctx = self._encoder(x + emb, None, segments) + emb
        picks = [select((seg == p) & valid) for p in range(passes)]
        width = max(idx.shape[1] for idx, _ in picks)
        return EncoderState(torch.cat([_pad_tokens(take(ctx, idx), width) for idx, _ in picks]),
                            torch.cat([_pad_tokens(ok, width) for _, ok in picks]))

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

    def sequence_queries(self, name: str, ids: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """Decoder queries (B, k, D) of sequence modality ``name`` that feed ``ids`` (B, k) at ``ranks`` (B, k)
        among its targets: the queries `decode` builds by teacher forcing, one at a time for generation."""
        return self.decoder_embeddings[name].embed(ids, ranks)

    def decode(self, batch: Batch, enc: EncoderState, domains: list[str] | None = None, *,
               logits: bool = True, cache: list[LayerCache] | None = None) -> dict[str, TargetLogits]:
        """Two layouts, the same result: without padding, each modality is a contiguous segment with its own
        attention call; with padding (counts differ between samples, the usual case in training), each sample's
        queries are packed to the front, so no compute goes to padding rows, and one block-diagonal mask keeps
        attention inside each modality (causal inside sequences). ``cache``: `new_cache(enc)`, the context's
        keys and values projected for its valid rows only (a guided batch pads its short unconditional context)."""
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
            h = self.run_decoder(x, enc, segments=segments, cache=cache)
            parts = torch.split(h, [q.x.shape[1] for q in queries.values()], dim=1)
            rows = {n: p.reshape(-1, p.shape[-1]) for n, p in zip(names, parts)}
        else:
            mod = torch.cat([torch.full_like(q.valid, i, dtype=torch.long) for i, q in enumerate(queries.values())],
                            dim=1)
            order = pack_order(valid)
            x, valid, mod = take(x, order), take(valid, order), take(mod, order)
            h = self.run_decoder(x, enc, self_mask=self._packed_mask(mod, valid, causal), cache=cache)
            rows = {n: h[(mod == i) & valid] for i, n in enumerate(names)}
        if not logits:
            # The head weight through a view: an autograd node, so a walk of the graph from the outputs (DDP's
            # search for used parameters) reaches the parameter; the bare leaf was marked unused there.
            return {n: TargetLogits(None, q.targets, q.valid, q.positions, rows[n], self.head(n).weight.view_as(
                self.head(n).weight)) for n, q in queries.items()}
        return {n: TargetLogits(self.logits(n, rows[n]), q.targets, q.valid, q.positions)
                for n, q in queries.items()}

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
                    self_mask: torch.Tensor | None = None, cache: list[LayerCache] | None = None) -> torch.Tensor:
        """Decoder blocks on queries x (B, Q, D), split into ``segments`` or masked by ``self_mask``
        (B, 1, Q, Q); returns normed states (B, Q, D). With ``cache`` (`new_cache`), cross-attention reads the
        context's keys and values projected there; a cache with a capacity makes x the next tokens of an
        autoregressive sequence (after those it holds), computed as a causal segment over the whole prefix."""
        if cache is not None:
            for block, layer in zip(self.decoder, cache, strict=True):
                x = block(x, segments=segments, self_mask=self_mask, cache=layer)
        else:
            mask = context_mask(enc.valid)
            for block in self.decoder:
                x = block(x, enc.context, segments=segments, self_mask=self_mask, context_mask=mask)
        return self.decoder_norm(x)

    def new_cache(self, enc: EncoderState, capacity: int | None = None) -> list[LayerCache]:
        """Per decoder layer, the context's keys and values, projected once for its valid rows, and with
        ``capacity``, room for that many autoregressive tokens; for `decode` and `run_decoder`."""
        mask = context_mask(enc.valid)
        return [block.new_cache(enc.context, enc.valid, capacity, mask=mask) for block in self.decoder]

    def head(self, name: str) -> nn.Linear:
        """The output head (vocabulary projection, bias-free) of output modality ``name``."""
        return self.decoder_embeddings[name].to_logits

    def logits(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """Normed decoder states (..., D) of output modality ``name`` -> logits (..., V)."""
        return self.head(name)(h)

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

    def load_adapters(self, folder: str | Path, *, merge: bool = False) -> FourM:
        """This model (the base) with the LoRA adapters of ``folder`` (`model.adapters.load_adapters`: refused if
        they were trained on another base); a new FourM where the adapters add modalities. ``merge``: folded into
        the weights, for inference."""
        from .adapters import load_adapters

        return load_adapters(self, folder, merge=merge)
