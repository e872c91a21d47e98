"""Generation plans as data: a chain is a list of `Step`s, one per target modality, run in order.

Each generated target joins the inputs of every later step (chaining). A step says how to decode its target, an
image target in ``num_steps`` decoding steps (MaskGIT or ROAR), a sequence token by token:

    Step("tok_clip@224", scheme="maskgit", num_steps=8, temperature=3.0, temperature_schedule="onex:0.5:1.0",
         guidance_scale=2.0)
    Step("caption", scheme="autoregressive", temperature=0.0)

Guidance: ``guidance_scale`` s != 1 runs classifier-free guidance against the plan's conditions (``guide``: the
conditions named there, default every condition given to `generate`; with ``Plan.grow_conditioning``, also the
image targets of earlier steps, as ml-4m's ``cfg_grow_conditioning``). ``condition_weights`` ({modality: weight},
negative allowed) instead runs weighted multi-condition guidance; it may name earlier targets, so the set grows
as the chain produces outputs.

`preset` builds the chains of ml-4m's 4M-21 demo with its settings: ``"rgb_to_all"`` and ``"caption_to_all"`` /
``"det_to_all"`` (text -> CLIP-like tokens -> geometry -> RGB tokens -> other sequences).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..modalities import Kind, Modality, get
from .guidance import Guidance
from .sampling import ScheduleError, temperature_schedule, token_schedule

SCHEMES = ("maskgit", "roar", "autoregressive")


class PlanError(ValueError):
    """A plan that does not fit the model or its targets; the message names the modality and the value."""


@dataclass(frozen=True)
class Step:
    """One target of a `Plan` and how to decode it; ``num_steps``: decoding steps of an image target (MaskGIT,
    ROAR), each committing a scheduled share of its tokens (sequences are decoded token by token)."""

    target: str
    scheme: str = "maskgit"
    num_steps: int = 8
    temperature: float = 1.0
    temperature_schedule: str = "constant"
    token_schedule: str = "cosine"
    guidance_scale: float = 1.0
    guide: tuple[str, ...] | None = None
    condition_weights: Mapping[str, float] | None = None
    top_k: int | float = 0
    top_p: float = 0.0
    max_tokens: int | None = None  # autoregressive: most tokens to write (default: the modality's room)
    stop_at_eos: bool = False  # autoregressive: also stop at [EOS] (ml-4m stops at the closing sentinel only)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise PlanError(f"{self.target}: unknown scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if self.scheme != "autoregressive" and self.num_steps < 1:
            raise PlanError(f"{self.target}: num_steps must be >= 1, got {self.num_steps}")
        if not self.temperature >= 0 or math.isinf(self.temperature):  # NaN fails every comparison
            raise PlanError(f"{self.target}: temperature must be a number >= 0, got {self.temperature}")
        if not math.isfinite(self.guidance_scale):
            raise PlanError(f"{self.target}: guidance_scale must be a finite number, got {self.guidance_scale}")
        if not 0 <= self.top_p <= 1:
            raise PlanError(f"{self.target}: top_p must be in [0, 1], got {self.top_p}")
        # an int counts tokens, a float is a share of the vocabulary (ml-4m's rule): -1 filtered nothing, and 1.5
        # kept every token, both silently
        if isinstance(self.top_k, numbers.Integral):  # a NumPy count too, which filter_top_k would take as a share
            object.__setattr__(self, "top_k", int(self.top_k))
        if not (self.top_k >= 0 and (isinstance(self.top_k, int) or self.top_k <= 1)):
            raise PlanError(f"{self.target}: top_k must be a count >= 0 or a fraction of the vocabulary in (0, 1], "
                            f"got {self.top_k}")
        if self.max_tokens is not None and not self.max_tokens >= 1:  # 0 was "the prompt fills the modality"
            raise PlanError(f"{self.target}: max_tokens must be a whole number >= 1 (or None), got {self.max_tokens}")
        if self.guide is not None:
            object.__setattr__(self, "guide", tuple(self.guide))
        if self.condition_weights and self.target in self.condition_weights:
            raise PlanError(f"{self.target}: condition_weights name the step's own target; weight conditions only")

    def check(self, mod: Modality) -> None:
        """Raise a PlanError if this step cannot decode ``mod``."""
        if mod.kind is Kind.SEQUENCE and self.scheme != "autoregressive":
            raise PlanError(f"{self.target}: a sequence is decoded autoregressively, not with {self.scheme!r}")
        if mod.kind is Kind.IMAGE_TOKENS and self.scheme == "autoregressive":
            raise PlanError(f"{self.target}: image tokens are decoded with maskgit or roar, not autoregressively")

    def schedules(self, total: int) -> tuple[list[int], list[float]]:
        """Tokens and temperature per step for ``total`` tokens to decode (ROAR: linear, as ml-4m)."""
        name = "linear" if self.scheme == "roar" else self.token_schedule
        try:
            tokens = token_schedule(name, self.num_steps, total)
            return tokens, temperature_schedule(self.temperature_schedule, self.temperature, tokens)
        except ScheduleError as e:
            raise PlanError(f"{self.target}: {e}") from None

    def guidance(self, conditions: Sequence[str]) -> Guidance:
        if self.condition_weights:
            return Guidance(weights=dict(self.condition_weights))
        drop = self.guide if self.guide is not None else tuple(conditions)
        return Guidance(scale=float(self.guidance_scale), drop=tuple(d for d in drop if d != self.target))


@dataclass(frozen=True)
class Plan:
    """A chain of `Step`s, one per target, run in order."""

    steps: tuple[Step, ...]
    grow_conditioning: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        targets = [s.target for s in self.steps]
        dup = {t for t in targets if targets.count(t) > 1}
        if dup:
            raise PlanError(f"a plan decodes each target once; repeated: {', '.join(sorted(dup))}")

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(s.target for s in self.steps)


# The 4M-21 demo's chain order and per-target settings (ml-4m fourm/demo_4M_sampler.py: DEFAULT_ORDER,
# DEFAULTS_RGB2X, DEFAULTS_X2RGB), as data. Image tokens: (scheme, steps, temperature, temperature schedule,
# guidance scale), linear token schedule; sequences: autoregressive at a temperature, no guidance.
DEMO_ORDER = ("tok_clip@224", "tok_dinov2@224", "tok_imagebind@224", "tok_depth@224", "tok_normal@224",
              "tok_semseg@224", "tok_canny_edge@224", "tok_sam_edge@224", "tok_rgb@224",
              "caption", "det", "human_poses", "sam_instance", "color_palette", "metadata")
_SEQ_TEMPS = {"caption": 0.3, "det": 0.3, "human_poses": 0.1, "sam_instance": 0.01, "color_palette": 0.1,
              "metadata": 0.1}
_FROM_RGB = ("roar", 1, 0.01, "constant", 2.0)
_TO_RGB = {"tok_clip@224": ("roar", 50, 5.0, "onex:0.5:0.5", 3.0),
           "tok_dinov2@224": ("roar", 8, 0.01, "constant", 2.0),
           "tok_imagebind@224": ("roar", 8, 0.01, "constant", 2.0),
           "tok_rgb@224": ("roar", 25, 3.0, "onex:0.5:0.5", 2.0)}
_TO_RGB_GEOMETRY = ("roar", 8, 3.0, "onex:0.5:0.5", 2.0)  # depth, normals, segmentation, edges
PRESETS = ("rgb_to_all", "caption_to_all", "det_to_all")


def preset(name: str, outputs: Sequence[str]) -> Plan:
    """The demo chain ``name`` over the model's ``outputs`` (`FourM.config.domains_out`), in the demo's order,
    skipping what the model lacks; conditions grow with every generated image modality, as in the demo.

    ``rgb_to_all``: RGB -> every modality but tok_rgb (image tokens: ROAR in one step at temperature 0.01, guidance
    2). ``caption_to_all`` / ``det_to_all``: text -> CLIP tokens -> DINOv2/ImageBind -> geometry -> RGB tokens ->
    the other sequences, with the demo's X->RGB settings (e.g. CLIP: ROAR 50 steps, temperature 5 onex, guidance 3).
    """
    if name not in PRESETS:
        raise PlanError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    source = name.removesuffix("_to_all")
    order = [d for d in DEMO_ORDER if d in outputs and d != source and not (source == "rgb" and d == "tok_rgb@224")]
    if not order:
        raise PlanError(f"preset {name!r}: the model outputs none of its targets ({', '.join(outputs)})")
    steps = []
    for d in order:
        if get(d).kind is Kind.SEQUENCE:
            steps.append(Step(d, "autoregressive", temperature=_SEQ_TEMPS.get(d, 0.1)))
            continue
        scheme, n, temp, temp_schedule, scale = _FROM_RGB if source == "rgb" else _TO_RGB.get(d, _TO_RGB_GEOMETRY)
        steps.append(Step(d, scheme, num_steps=min(n, get(d).num_tokens), temperature=temp,
                          temperature_schedule=temp_schedule, token_schedule="linear", guidance_scale=scale))
    return Plan(tuple(steps), grow_conditioning=True, name=name)
