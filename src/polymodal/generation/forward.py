"""The model calls that generation makes: encode a (guidance-batched) state, decode image-token queries, and
decode a sequence token by token with a KV cache.

These reuse `FourM`'s modules (embeddings, blocks, norms, heads) and differ from `FourM.forward` in two ways that
generation needs: a sample may have no encoder token at all (an unconditional guidance pass, or generation from
nothing), whose cross-attention then reads nothing, as in ml-4m; and the decoder can run incrementally
(`nn.kv_cache`).
"""

from __future__ import annotations

import torch

from ..data.batch import Batch
from ..model.embeddings import select, take
from ..model.fourm import EncoderState, FourM
from ..nn.kv_cache import decoder_block, new_caches


def encode(model: FourM, batch: Batch, passes: int = 1) -> EncoderState:
    """The encoder on a state (``passes == 1``: exactly `FourM.encode`) or on the P guidance passes of
    `Guidance.passes`, (P * B) rows pass-major. A batch without any input token gives an empty context.

    Passes are packed per sample: the P passes of sample b share one row of the encoder, under a block-diagonal
    mask (a token attends only to its own pass). An unconditional pass usually has far fewer tokens than the
    conditional one (no RGB: only the committed target tokens), so this costs (E_cond + E_uncond) token rows
    instead of P * E_cond with padding. The context is unpacked to (P * B, E', D) for the decoder.
    """
    parts = [emb(batch[name]) for name, emb in model.encoder_embeddings.items()
             if name in batch and batch[name].is_input.shape[1] > 0]
    parts = [p for p in parts if p.x.shape[1] > 0]
    if not parts or not any(bool(p.valid.any()) for p in parts):
        b, d = batch.batch_size, model.config.dim
        dev = model.mask_token.device
        return EncoderState(torch.zeros(b, 1, d, device=dev, dtype=model.mask_token.dtype),
                            torch.zeros(b, 1, dtype=torch.bool, device=dev))
    if passes == 1:
        return model.encode(batch)
    x, emb, valid = (torch.cat(t, dim=1) for t in zip(*[(p.x, p.emb, p.valid) for p in parts]))
    pb, n, d = x.shape
    b = pb // passes
    side = lambda t: t.reshape(passes, b, n, *t.shape[2:]).transpose(0, 1).reshape(b, passes * n, *t.shape[2:])  # noqa: E731
    x, emb, valid = side(x), side(emb), side(valid)
    seg = torch.arange(passes, device=x.device).repeat_interleave(n).expand(b, -1)
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, : int(valid.sum(1).max())]
    x, emb, valid, seg = take(x, order), take(emb, order), take(valid, order), take(seg, order)
    mask = (seg[:, :, None] == seg[:, None, :]) & valid[:, None, :]
    mask |= torch.eye(mask.shape[1], dtype=torch.bool, device=x.device)  # padding rows stay finite
    h = x + emb
    for block in model.encoder:
        h = block(h, mask[:, None])
    ctx = model.decoder_proj_context(model.encoder_norm(h)) + emb
    picks = [select((seg == p) & valid) for p in range(passes)]
    width = max(idx.shape[1] for idx, _ in picks)
    pad = lambda t, w: torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, w - t.shape[1]))  # noqa: E731
    context = torch.cat([pad(take(ctx, idx), width) for idx, _ in picks])
    ok = torch.cat([pad(v, width) for _, v in picks])
    return EncoderState(context, ok)


def repeat_rows(t: torch.Tensor, passes: int) -> torch.Tensor:
    """(B, ...) -> (P * B, ...), pass-major (the layout of `Guidance.passes`)."""
    return t if passes == 1 else torch.cat([t] * passes, dim=0)


def decode_image(model: FourM, target: str, state: Batch, query_mask: torch.Tensor, enc: EncoderState,
                 passes: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder states at the ``query_mask`` (B, N) positions of image-token modality ``target``.

    Queries are ``mask_token + pos + mod`` in ascending position order, padded to the largest count; they attend
    to each other fully (padding excluded) and to the context. Returns the normed states (P * B, Q, D), before the
    vocabulary projection (``decoder_embeddings[target].to_logits``), valid (B, Q) and positions (B, Q).
    """
    head = model.decoder_embeddings[target]
    q = head(state[target].with_masks(is_target=query_mask), model.mask_token)
    x, valid = repeat_rows(q.x, passes), repeat_rows(q.valid, passes)
    self_mask = None if bool(valid.all()) else (valid[:, None, None, :] | torch.eye(
        valid.shape[1], dtype=torch.bool, device=valid.device))
    for block in model.decoder:
        x = decoder_block(block, x, enc.context, context_valid=enc.valid, self_mask=self_mask)
    return model.decoder_norm(x), q.valid, q.positions


class SequenceDecoder:
    """Incremental decoding of sequence modality ``target`` against a fixed context.

    ``step(ids)`` feeds the next token of every row, (R,) int64, and returns the normed decoder state (R, D) that
    predicts the token after it (``to_logits`` gives the logits). With ``cache=True`` each layer keeps its keys
    and values and the context K/V are projected once; with ``cache=False`` the whole prefix is re-run every step
    (what ml-4m does) — the tokens are the same. Query t embeds its token plus position t (0 once t reaches the
    modality's decoder limit, as in training).
    """

    def __init__(self, model: FourM, target: str, enc: EncoderState, capacity: int, *, cache: bool = True):
        self.model, self.enc, self.cache = model, enc, cache
        self.head = model.decoder_embeddings[target]
        self.limit = self.head.modality.decoder_pos_limit
        self.caches = new_caches(list(model.decoder), enc.context, enc.valid, capacity) if cache else None
        self.prefix: torch.Tensor | None = None  # uncached: every embedded query so far, (R, t, D)
        self.t = 0

    def _embed(self, ids: torch.Tensor, t: int) -> torch.Tensor:
        pos = t if t < self.limit else 0
        return self.head.token_emb(ids)[:, None] + self.head.pos_emb[0, pos] + self.head.mod_emb[0]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        x = self._embed(ids, self.t)
        self.t += 1
        if self.cache:
            for block, layer_cache in zip(self.model.decoder, self.caches):
                x = decoder_block(block, x, cache=layer_cache)
        else:
            self.prefix = x if self.prefix is None else torch.cat([self.prefix, x], dim=1)
            x = self.prefix
            for block in self.model.decoder:
                x = decoder_block(block, x, self.enc.context, context_valid=self.enc.valid, is_causal=True)
        return self.model.decoder_norm(x[:, -1])

    def to_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head.to_logits(h)
