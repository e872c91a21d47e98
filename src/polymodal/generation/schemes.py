"""One step function per decoding scheme. Each takes the generation state (a `Batch`) and returns the next one;
guidance wraps any of them through its `Guidance` argument (the passes share one forward).

State of a target during generation: image tokens hold the committed ids with ``is_input`` True (committed
tokens are encoder inputs at the next step, as in ml-4m) and ``is_target`` True where tokens are still to come.
A sequence target holds its prompt as input ids: ``[S_1]`` alone to write from scratch, or a text with sentinels
``[S_k]`` where spans are to be written; after its step it holds the merged text as a full input.

- `maskgit_step`: decode every position still to come, sample all of them, commit each sample's ``counts[b]``
  most confident (ml-4m: confidence = probability of the sampled token, 1 for every position when greedy, ties
  broken by `torch.topk` over positions in ascending order, as in ml-4m). Greedy steps know the committed rows
  before the logits, so only those go through the vocabulary projection (same tokens).
- `roar_step`: random-order autoregression: pick ``counts[b]`` positions still to come in a random order
  (``torch.rand`` over the grid, as ml-4m), decode only those queries and commit all their samples.
- `autoregressive_step`: start from the first sentinel of the prompt and decode token by token (KV cache) until
  each sample emits its closing sentinel (one past the prompt's last sentinel, ``[S_2]`` for an empty prompt) or,
  with ``stop_at_eos``, ``[EOS]``; then replace each prompt sentinel by the span generated after it.

Every model call is one of `FourM`'s entry points (`encode`, `decode`, `sequence_queries` + `run_decoder` with
`new_cache`, `logits`), the code that training runs: generation cannot drift from it.
"""

from __future__ import annotations

import torch

from ..data.batch import Batch, ModalityTokens
from ..model.fourm import EncoderState, FourM
from ..nn import Segment
from ..nn.linear import one_row_products
from ..tokenizers.text_layout import EOS, NUM_SENTINELS, PAD, SENTINEL_BASE
from .guidance import Guidance
from .sampling import is_greedy, sample, select_confident

NO_GUIDANCE = Guidance()


class PromptError(ValueError):
    """A sequence prompt that cannot be completed (no sentinel to write at, no room left)."""


def _is_sentinel(i: int) -> bool:
    return SENTINEL_BASE <= i < SENTINEL_BASE + NUM_SENTINELS


def commit(state: Batch, target: str, positions: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> Batch:
    """Write ``ids`` (B, Q) at ``positions`` (B, Q) where ``chosen`` (B, Q): they become inputs, not targets."""
    t = state[target]
    b, q = chosen.nonzero(as_tuple=True)
    pos = positions[b, q]
    values = t.values.clone()
    values[b, pos] = ids[b, q].to(values.dtype)
    done = torch.zeros_like(t.is_target)
    done[b, pos] = True
    return state.replace(**{target: ModalityTokens(values, t.is_input | done, t.is_target & ~done)})


def _guided_image_states(model: FourM, state: Batch, target: str, query_mask: torch.Tensor, guidance: Guidance):
    """Guided decoder states (n, D) of the queries at the ``query_mask`` (B, N) positions, one row per query in
    (sample, position) order; their valid (B, Q) and positions (B, Q)."""
    asked = state.replace(**{target: state[target].with_masks(is_target=query_mask)})
    batched = guidance.passes(asked, model.config.modality)
    enc = model.encode(batched, passes=guidance.num_passes)
    # the context's K/V projected for valid rows only: a guided batch pads its short unconditional context
    out = model.decode(batched, enc, [target], logits=False, cache=model.new_cache(enc))[target]
    # every pass asks the same queries, so the passes' rows line up; guidance is linear and the head bias-free:
    # mixing states first projects once, not P times
    b = state.batch_size
    return guidance.combine(out.hidden), out.valid[:b], out.positions[:b]


def _guided_image_logits(model: FourM, state: Batch, target: str, query_mask: torch.Tensor, guidance: Guidance):
    """Guided logits (B, Q, V) at the ``query_mask`` positions (zeros on padding rows), valid and positions."""
    h, valid, positions = _guided_image_states(model, state, target, query_mask, guidance)
    dense = h.new_zeros(*valid.shape, h.shape[-1])
    dense[valid] = h
    return model.logits(target, dense), valid, positions


def maskgit_step(model: FourM, state: Batch, target: str, counts: torch.Tensor, *, temperature: float = 1.0,
                 top_k: int | float = 0, top_p: float = 0.0, guidance: Guidance = NO_GUIDANCE,
                 generator: torch.Generator | None = None) -> Batch:
    """Commit ``counts`` (B,) tokens of image modality ``target`` (see the module docstring)."""
    todo = state[target].is_target
    if not bool(counts.any()):
        return state
    if is_greedy(temperature):
        # Greedy confidences are all 1, so the committed rows (select_confident's tie order) are known before any
        # logits: only they go through the vocabulary projection, the largest matrix of a step (V x D), instead of
        # every position still to come (196 + 192 + ... rows over 8 steps where 196 are committed). Same tokens.
        h, valid, positions = _guided_image_states(model, state, target, todo, guidance)
        chosen = select_confident(torch.ones(valid.shape, device=valid.device), valid, counts)
        ids = torch.zeros(valid.shape, dtype=torch.long, device=valid.device)
        # h's rows: valid's True in order. argmax in float32 (exact; torch's bf16 argmax on the CPU is ~5x slower)
        ids[chosen] = model.logits(target, h[chosen[valid]]).float().argmax(dim=-1)
        return commit(state, target, positions, ids, chosen)
    logits, valid, positions = _guided_image_logits(model, state, target, todo, guidance)
    ids, conf = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return commit(state, target, positions, ids, select_confident(conf, valid, counts))


def roar_order(todo: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N) positions still to come -> (B, N) rank of each position in a random order, those to come first.
    One uniform draw per grid position, shared by the batch (ml-4m's ``forward_mask_decoder_roar``)."""
    dev = generator.device if generator is not None else todo.device
    r = torch.rand(todo.shape[1], generator=generator, device=dev).to(todo.device)
    order = torch.argsort((~todo).float() + r[None, :] * 1e-6, dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(todo.shape[1], device=todo.device).expand_as(order).contiguous())
    return ranks


def roar_step(model: FourM, state: Batch, target: str, counts: torch.Tensor, *, temperature: float = 1.0,
              top_k: int | float = 0, top_p: float = 0.0, guidance: Guidance = NO_GUIDANCE,
              generator: torch.Generator | None = None) -> Batch:
    """Commit ``counts`` (B,) randomly chosen tokens of image modality ``target``."""
    todo = state[target].is_target
    chosen = todo & (roar_order(todo, generator) < counts[:, None])
    if not bool(chosen.any()):
        return state
    logits, valid, positions = _guided_image_logits(model, state, target, chosen, guidance)
    ids, _ = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return commit(state, target, positions, ids, valid)


def prompt_rows(tokens: ModalityTokens, name: str) -> list[list[int]]:
    rows = []
    for b in range(tokens.batch_size):
        row = tokens.values[b][tokens.is_input[b]].tolist()
        if not any(_is_sentinel(i) for i in row):
            raise PromptError(f"{name}: the prompt of sample {b} has no sentinel [S_k] marking where to write "
                              f"(ids {row[:12]}{'...' if len(row) > 12 else ''}); use [S_1] alone to write from "
                              "scratch")
        rows.append(row)
    return rows


def merge_spans(prompt: list[int], generated: list[int]) -> list[int]:
    """Each sentinel of ``prompt`` replaced by the tokens that follow the same sentinel in ``generated``."""
    spans: dict[int, list[int]] = {}
    current = None
    for tok in generated:
        if _is_sentinel(tok):
            current = tok
            spans.setdefault(tok, [])
        else:
            spans.setdefault(current, []).append(tok)
    out: list[int] = []
    for tok in prompt:
        out.extend(spans.get(tok, [])) if _is_sentinel(tok) else out.append(tok)
    return out


def repeat_rows(t: torch.Tensor, passes: int) -> torch.Tensor:
    """(B, ...) -> (P * B, ...), pass-major (the layout of `Guidance.passes`)."""
    return t if passes == 1 else torch.cat([t] * passes, dim=0)


class SequenceDecoder:
    """Incremental decoding of sequence modality ``target`` against a fixed context, through `FourM`'s own
    queries and decoder.

    ``step(ids)`` feeds the next token of every row, (R,) int64, and returns the normed decoder state (R, D) that
    predicts the token after it. With ``cache=True`` each layer keeps its keys and values and the context's are
    projected once (`FourM.new_cache`); with ``cache=False`` the whole prefix is re-run every step as one causal
    segment (what ml-4m does), which is teacher forcing's computation — the tokens are the same.
    """

    def __init__(self, model: FourM, target: str, enc: EncoderState, capacity: int, *, cache: bool = True):
        self.model, self.target, self.enc = model, target, enc
        self.cache = model.new_cache(enc, capacity) if cache else None
        self.prefix: torch.Tensor | None = None  # uncached: every query so far, (R, t, D)
        self.t = 0  # tokens fed so far: the rank of the next one

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.model.sequence_queries(self.target, ids[:, None], torch.full_like(ids[:, None], self.t))
        self.t += 1
        if self.cache is not None:
            return self.model.run_decoder(x, self.enc, cache=self.cache)[:, -1]
        self.prefix = x if self.prefix is None else torch.cat([self.prefix, x], dim=1)
        return self.model.run_decoder(self.prefix, self.enc, segments=[Segment(0, self.t, causal=True)])[:, -1]


def autoregressive_step(model: FourM, state: Batch, target: str, *, temperature: float = 1.0,
                        top_k: int | float = 0, top_p: float = 0.0, guidance: Guidance = NO_GUIDANCE,
                        generator: torch.Generator | None = None, max_tokens: int | None = None,
                        stop_at_eos: bool = False, cache: bool = True) -> tuple[Batch, torch.Tensor]:
    """Write the spans of sequence modality ``target``. Returns the new state (the merged text as input) and the
    decoded ids (B, T) from the start sentinel on, PAD after each sample's stop token.

    The encoder runs once for all guidance passes; the decoder runs once per token (cached) or over the whole
    prefix per token (``cache=False``). At most ``max_tokens`` tokens are generated (default: the modality's
    maximum length minus the prompt's, as ml-4m's target budget).
    """
    tokens = state[target]
    mod = model.config.modality(target)
    prompts = prompt_rows(tokens, target)
    dev = tokens.values.device
    start = torch.tensor([min(i for i in r if _is_sentinel(i)) for r in prompts], device=dev)
    close = torch.tensor([max(i for i in r if _is_sentinel(i)) + 1 for r in prompts], device=dev)
    room = mod.max_length - max(len(r) for r in prompts)
    room = min(room, max_tokens) if max_tokens is not None else room
    if room < 1:
        raise PromptError(f"{target}: the prompt fills the modality's {mod.max_length} tokens; no room to write")
    p = guidance.num_passes
    enc = model.encode(guidance.passes(state, model.config.modality), passes=p)
    decoder = SequenceDecoder(model, target, enc, capacity=room, cache=cache)
    head = one_row_products(model.head(target))  # a reordered copy of the vocabulary head, for this call
    out, tok = [start], start
    done = torch.zeros_like(start, dtype=torch.bool)
    lengths = torch.full_like(start, room + 1)  # tokens up to and including each sample's stop token
    for i in range(room):
        logits = head(guidance.combine(decoder.step(repeat_rows(tok, p))))
        tok, _ = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        # finished rows keep being decoded (batch-shaped cache, same draws as ml-4m) but their tokens are PAD
        out.append(torch.where(done, torch.full_like(tok, PAD), tok))
        stop = ~done & ((tok == close) | ((tok == EOS) & stop_at_eos))
        lengths = torch.where(stop, torch.full_like(lengths, i + 2), lengths)
        done |= stop
        if bool(done.all()):
            break
    generated = torch.stack(out, dim=1)
    merged = [merge_spans(pr, g[:n]) for pr, g, n in zip(prompts, generated.tolist(), lengths.tolist())]
    width = max(len(m) for m in merged)
    values = torch.full((len(merged), width), PAD, dtype=torch.long, device=dev)
    used = torch.zeros(len(merged), width, dtype=torch.bool, device=dev)
    for b, m in enumerate(merged):
        values[b, :len(m)] = torch.tensor(m, dtype=torch.long)
        used[b, :len(m)] = True
    return state.replace(**{target: ModalityTokens(values, used, torch.zeros_like(used))}), generated
