"""Plans for a pipeline: from a list of targets with a few knobs, or from the 4M-21 demo presets at any resolution.

`targets_plan` builds one step per target: image tokens by MaskGIT (cosine schedule), sequences autoregressively
(stopping at the closing sentinel or [EOS]). Unless ``steps``/``temperature`` are given, an image target is
*predicted* when an image of the scene (pixels or a spatial token map, given or generated earlier in the plan) is
among its conditions: one greedy step, as 4M-21's demo decodes RGB -> X (ROAR, one step, temperature 0.01), since
committing tokens over several steps feeds the model its own early guesses; otherwise it is *generated*: 8 MaskGIT
steps at temperature 0.5 (at most one step a token). ``steps``/``temperature``/``guidance`` follow the one rule of
`pipeline.settings`; ``steps`` larger than a target's token count is refused rather than clipped: the user asked for
something the target cannot do.

`preset_plan` runs `generation.preset` (written for 4M-21's ``@224`` names) on any model: each output is named by
its 224 px twin (``tok_depth@64`` -> ``tok_depth@224``), the preset orders and configures them, and the names are
mapped back. Step counts keep the demo's tokens per step: a step count set for the twin's N' tokens becomes
``round(steps * N / N')`` (at least 1) for N tokens (RGB tokens at 64 px, 8x8: 25 steps -> 8). Outputs the demo
chain does not know (e.g. ``tok_minilm_global``) join as semantic tokens: first in an X -> RGB chain (the role of
4M's CLIP tokens), last in RGB -> all. ``until`` cuts the chain after a target (the demo stops X -> RGB chains at
the RGB tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import modalities
from ..config import ModelConfig
from ..generation import Plan, Step, preset
from ..generation.plan import PRESETS
from ..modalities import Kind, is_registered
from .inputs import PipelineError
from .settings import check_settings, check_steps

DEFAULT_STEPS = 8
DEFAULT_IMAGE_TEMPERATURE = 0.5
PREDICT_STEPS, PREDICT_TEMPERATURE = 1, 0.0  # an image target conditioned on an image of the scene
DEFAULT_TEXT_TEMPERATURE = 0.3
_SEMANTIC = ("roar", 8, 0.01, "constant", 2.0)  # unknown image outputs in an X -> RGB chain: like DINOv2's step


def is_scene_image(mod: modalities.Modality) -> bool:
    """Pixels or a spatial token map of the scene; not a global embedding laid out as tokens (learned positions)."""
    return mod.kind is Kind.PIXELS or (mod.kind is Kind.IMAGE_TOKENS and mod.pos == "sincos")


def targets_plan(cfg: ModelConfig, targets: Sequence[str], *, given: Sequence[str] = (), steps: int | None = None,
                 temperature: float | None = None, guidance: float | None = None, top_k: int | float = 0,
                 top_p: float = 0.0) -> Plan:
    """One step per target (model output names), in the given order; ``given``: the conditions' domain names,
    which choose between predicting and generating an image target (see the module doc)."""
    c = check_settings(steps=steps, temperature=temperature, guidance=guidance)
    steps, temperature, guidance = c.get("steps"), c.get("temperature"), c.get("guidance")
    scale = 1.0 if guidance is None else guidance
    out = []
    seen_image = any(is_scene_image(cfg.modality(g)) for g in given)
    for t in targets:
        mod = cfg.modality(t)
        predicted, seen_image = seen_image, seen_image or is_scene_image(mod)
        if mod.kind is Kind.SEQUENCE:
            temp = DEFAULT_TEXT_TEMPERATURE if temperature is None else temperature
            out.append(Step(t, "autoregressive", temperature=temp, guidance_scale=scale, top_k=top_k,
                            top_p=top_p, stop_at_eos=True))
            continue
        n = mod.num_tokens
        temp = (PREDICT_TEMPERATURE if predicted else DEFAULT_IMAGE_TEMPERATURE) if temperature is None \
            else temperature
        if steps is not None:
            check_steps(steps, n, t)
        k = steps if steps is not None else PREDICT_STEPS if predicted else min(DEFAULT_STEPS, n)
        out.append(Step(t, "maskgit", num_steps=k, temperature=temp, guidance_scale=scale, top_k=top_k,
                        top_p=top_p))
    return Plan(tuple(out), name="targets")


def _twin(name: str) -> str:
    return name.split("@")[0] + "@224" if "@" in name else name


def preset_plan(cfg: ModelConfig, name: str, *, until: str | None = None, steps: int | None = None,
                temperature: float | None = None, guidance: float | None = None) -> Plan:
    """The demo chain ``name`` (`generation.PRESETS`) over this model's outputs (see the module docstring);
    ``steps``/``temperature``/``guidance`` override every image step's settings when given."""
    if name not in PRESETS:
        raise PipelineError(f"unknown plan {name!r}; presets: {', '.join(PRESETS)}")
    c = check_settings(steps=steps, temperature=temperature, guidance=guidance)
    steps, temperature, guidance = c.get("steps"), c.get("temperature"), c.get("guidance")
    outputs = list(cfg.domains_out)
    twins = {}
    for o in outputs:
        t = _twin(o)
        if is_registered(t) and t not in twins:
            twins[t] = o
    try:
        base = preset(name, list(twins))
    except ValueError as e:
        raise PipelineError(str(e)) from None
    chain = [dataclasses.replace(s, target=twins[s.target], stop_at_eos=s.scheme == "autoregressive")
             for s in base.steps]
    known = {s.target for s in chain}
    source = name.removesuffix("_to_all")
    extra = [o for o in outputs if o not in known and cfg.modality(o).kind is Kind.IMAGE_TOKENS
             and o.removeprefix("tok_").split("@")[0] != source]
    if extra:
        scheme, n, temp, schedule, scale = _SEMANTIC
        if source == "rgb":
            scheme, n, temp, schedule, scale = "roar", 1, 0.01, "constant", 2.0
        steps_of = [Step(o, scheme, num_steps=n, temperature=temp, temperature_schedule=schedule,
                         token_schedule="linear", guidance_scale=scale) for o in extra]
        chain = chain + steps_of if source == "rgb" else steps_of + chain
    fixed = []
    for s in chain:
        if s.scheme != "autoregressive":
            n = cfg.modality(s.target).num_tokens
            twin = _twin(s.target)
            ref = modalities.get(twin).num_tokens if is_registered(twin) and twin != s.target else n
            if steps is not None:
                check_steps(steps, n, s.target)  # refused, not clipped, as for a list of targets (module docstring)
            k = min(max(1, round(s.num_steps * n / ref)), n) if steps is None else steps
            s = dataclasses.replace(s, num_steps=k, temperature=s.temperature if temperature is None else temperature,
                                    guidance_scale=s.guidance_scale if guidance is None else guidance)
        fixed.append(s)
        if until is not None and s.target == until:
            break
    return Plan(tuple(fixed), grow_conditioning=base.grow_conditioning, name=name)


def plan_to_dict(plan: Plan) -> dict:
    """JSON-ready form of a plan (what a bundle's ``pipeline.json`` stores under ``plans``)."""
    steps = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()}
             for s in plan.steps]
    return {"steps": steps, "grow_conditioning": plan.grow_conditioning}


def plan_from_dict(data: dict, name: str = "custom") -> Plan:
    """The plan `plan_to_dict` wrote; a step's ``steps`` (its name before ``num_steps``) is read as ``num_steps``."""
    try:
        steps = [_renamed(s) for s in data["steps"]]
        return Plan(tuple(Step(**s) for s in steps), grow_conditioning=bool(data.get("grow_conditioning")),
                    name=name)
    except (KeyError, TypeError, AttributeError) as e:
        raise PipelineError(f"plan {name!r}: not a plan ({e})") from None
    except ValueError as e:  # a step's own check (PlanError): which plan holds it
        raise PipelineError(f"plan {name!r}: {e}") from None


def _renamed(step: dict) -> dict:
    if "steps" in step and "num_steps" not in step:
        step = {("num_steps" if k == "steps" else k): v for k, v in step.items()}
    return step
