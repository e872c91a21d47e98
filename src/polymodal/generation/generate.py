"""`generate(model, conditions, plan)`: run a plan and return ids per target modality; `generate_iter` yields the
state after every step.

Conditions map a modality name to its tokens: a tensor (every position given: image-token ids (B, N), pixels
(B, C, H, W), sequence ids (B, L) read up to their first ``[EOS]`` without ``[PAD]``, vectors (B, L, E)), or a
`ModalityTokens` whose ``is_input`` marks what is given. A condition that is also a plan target is completed:
image tokens are in-painted where ``is_input`` is False; a sequence is a prompt whose sentinels ``[S_k]`` mark the
spans to write. Randomness: ``seed`` reseeds a fresh generator with ``seed + i`` before flattened step i (ml-4m's
``generate(..., seed)``: with the same seed, ml-4m draws the same numbers on the CPU); otherwise every draw comes from
``generator`` (default: a new generator with torch's default seed). Call ``model.eval()`` first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from ..data.batch import Batch, ModalityTokens
from ..modalities import Kind
from ..model.fourm import FourM
from ..tokenizers.text_layout import EOS, PAD
from .guidance import S_1
from .plan import Plan, PlanError, Step
from .schemes import autoregressive_step, maskgit_step, prompt_rows, roar_step


class ConditionError(ValueError):
    """A condition the model cannot take; the message names the modality and what is wrong."""


@dataclass(frozen=True)
class StepResult:
    index: int  # flattened step (one per MaskGIT/ROAR step, one per autoregressive target)
    target: str
    state: Batch  # every condition and target after this step
    finished: bool  # this step completed its target
    tokens: torch.Tensor | None = None  # autoregressive steps: the decoded ids (B, T), start sentinel first


def _as_tokens(model: FourM, name: str, value, batch_size: int | None) -> ModalityTokens:
    mod = model.config.modality(name)
    if isinstance(value, ModalityTokens):
        tokens = value
    else:
        v = torch.as_tensor(value)
        if mod.kind is Kind.SEQUENCE:
            v = v.long()
            after_eos = (v == EOS).long().cumsum(dim=1) - (v == EOS).long() > 0
            tokens = ModalityTokens(v, (v != PAD) & ~after_eos, torch.zeros_like(v, dtype=torch.bool))
        else:
            if mod.kind is Kind.IMAGE_TOKENS:
                v = v.reshape(v.shape[0], -1).long()
            tokens = ModalityTokens.full_input(v, mod.num_tokens if mod.is_grid else None)
    if batch_size is not None and tokens.batch_size == 1 and batch_size > 1:
        rep = lambda t: t.expand(batch_size, *t.shape[1:]).clone()  # noqa: E731
        tokens = ModalityTokens(rep(tokens.values), rep(tokens.is_input), rep(tokens.is_target))
    if mod.kind is not Kind.IMAGE_TOKENS and not bool(tokens.is_input.any(dim=1).all()):
        empty = int((~tokens.is_input.any(dim=1)).nonzero()[0])
        raise ConditionError(f"{name}: sample {empty} is empty (no input token); drop the condition instead")
    return tokens.with_masks(is_target=torch.zeros_like(tokens.is_input))


def initial_state(model: FourM, conditions: Mapping[str, object], plan: Plan, *,
                  batch_size: int | None = None) -> Batch:
    """The conditions and the empty (or partly given) targets as one `Batch`; raises on anything that won't fit."""
    cfg = model.config
    enc, dec = set(cfg.domains_in), set(cfg.domains_out)
    for name in list(conditions) + list(plan.targets):
        if name not in enc and name not in dec:
            raise ConditionError(f"modality {name!r} is not a domain of this model (inputs: "
                                 f"{', '.join(cfg.domains_in)}; outputs: {', '.join(cfg.domains_out)})")
    for step in plan.steps:
        if step.target not in dec:
            raise PlanError(f"{step.target}: this model cannot output it (outputs: "
                            f"{', '.join(model.config.domains_out)})")
        step.check(model.config.modality(step.target))
    for name in conditions:
        if name not in enc:
            raise ConditionError(f"{name}: not an input of this model, so it cannot condition")
    items = {n: _as_tokens(model, n, v, batch_size) for n, v in conditions.items()}
    b = batch_size or (next(iter(items.values())).batch_size if items else 1)
    dev = model.mask_token.device
    for step in plan.steps:
        name, mod = step.target, model.config.modality(step.target)
        given = items.get(name)
        if mod.kind is Kind.SEQUENCE:
            tokens = given if given is not None else ModalityTokens.full_input(
                torch.full((b, 1), S_1, dtype=torch.long, device=dev))
            prompt_rows(tokens, name)  # fail now, not after earlier steps ran
        elif given is not None:
            if isinstance(conditions[name], ModalityTokens) and not bool(given.is_input.all()):
                tokens = given.with_masks(is_target=~given.is_input)  # in-painting
            else:
                raise PlanError(f"{name}: is a target but fully given as a condition; pass ModalityTokens whose "
                                "is_input marks the given tokens to in-paint the rest")
        else:
            none = torch.zeros(b, mod.num_tokens, dtype=torch.bool, device=dev)
            tokens = ModalityTokens(torch.zeros(b, mod.num_tokens, dtype=torch.long, device=dev), none, ~none)
        items[name] = tokens
    state = Batch(items)
    model.check_batch(state)
    return state


def generate_iter(model: FourM, conditions: Mapping[str, object], plan: Plan, *,
                  generator: torch.Generator | None = None, seed: int | None = None, cache: bool = True,
                  batch_size: int | None = None) -> Iterator[StepResult]:
    """Run ``plan``, yielding a `StepResult` after every step (see the module docstring)."""
    state = initial_state(model, conditions, plan, batch_size=batch_size)
    dev = model.mask_token.device
    gen = generator if generator is not None else torch.Generator(device=dev)
    given = [n for n in conditions if n not in plan.targets]
    index = 0
    for k, step in enumerate(plan.steps):
        # ml-4m grows the guided set with image targets only (its autoregressive targets skip the growth)
        grown = [s.target for s in plan.steps[:k] if s.scheme != "autoregressive"] if plan.grow_conditioning else []
        guiding = given + grown
        guidance = step.guidance(guiding)
        kw = dict(top_k=step.top_k, top_p=step.top_p, guidance=guidance)
        if step.scheme == "autoregressive":
            g = torch.Generator(device=dev).manual_seed(seed + index) if seed is not None else gen
            with torch.no_grad():
                state, tokens = autoregressive_step(model, state, step.target, temperature=step.temperature,
                                                    generator=g, max_tokens=step.max_tokens,
                                                    stop_at_eos=step.stop_at_eos, cache=cache, **kw)
            yield StepResult(index, step.target, state, True, tokens)
            index += 1
            continue
        counts, temps = _image_schedule(step, state[step.target].is_target)
        fn = maskgit_step if step.scheme == "maskgit" else roar_step
        for i, (c, t) in enumerate(zip(counts, temps)):
            g = torch.Generator(device=dev).manual_seed(seed + index) if seed is not None else gen
            with torch.no_grad():
                state = fn(model, state, step.target, c, temperature=t, generator=g, **kw)
            yield StepResult(index, step.target, state, i == len(counts) - 1)
            index += 1


def _image_schedule(step: Step, todo: torch.Tensor) -> tuple[list[torch.Tensor], list[float]]:
    """Per step: tokens to commit per sample (B,), and the temperature. Samples with different numbers of tokens
    to decode (in-painting) get their own schedule of the same length; the temperatures follow the largest."""
    totals = todo.sum(dim=1).tolist()
    per_sample = {n: step.schedules(n) for n in set(totals)}
    longest = max(len(s[0]) for s in per_sample.values())
    rows = [per_sample[n][0] + [0] * (longest - len(per_sample[n][0])) for n in totals]
    counts = torch.tensor(rows, dtype=torch.long, device=todo.device).T
    temps = per_sample[max(totals)][1]
    temps = temps + [temps[-1]] * (longest - len(temps))
    return list(counts), temps


def generate(model: FourM, conditions: Mapping[str, object], plan: Plan, *,
             generator: torch.Generator | None = None, seed: int | None = None, cache: bool = True,
             batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Ids per target of ``plan``: image tokens (B, N); sequences (B, L), the merged text padded with [PAD]."""
    state = None
    for result in generate_iter(model, conditions, plan, generator=generator, seed=seed, cache=cache,
                                batch_size=batch_size):
        state = result.state
    return {t: state[t].values for t in plan.targets}
