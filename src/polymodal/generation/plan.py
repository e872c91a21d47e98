"""Generation plans as data: a chain is a list of `Step`s, one per target modality, run in order.

Each generated target joins the inputs of every later step (chaining). A step says how to decode its target:

    Step("tok_clip@224", scheme="maskgit", steps=8, temperature=3.0, temperature_schedule="onex:0.5:1.0",
         guidance_scale=2.0)
    Step("caption", scheme="autoregressive", temperature=0.0)

Guidance: ``guidance_scale`` s != 1 runs classifier-free guidance against the plan's conditions (``guide``: the
conditions named there, default every condition given to `generate`; with ``Plan.grow_conditioning``, also the
targets of earlier steps, as ml-4m's ``cfg_grow_conditioning``). ``condition_weights`` ({modality: weight},
negative allowed) instead runs weighted multi-condition guidance; it may name earlier targets, so the set grows
as the chain produces outputs.

`preset` builds the chains of ml-4m's 4M-21 demo: ``"rgb_to_all"`` and ``"caption_to_rgb"`` /
``"det_to_rgb"`` (text -> CLIP-like tokens -> geometry -> RGB tokens).
"""

from __future__ import annotations

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
    target: str
    scheme: str = "maskgit"
    steps: int = 8
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
        if self.scheme != "autoregressive" and self.steps < 1:
            raise PlanError(f"{self.target}: steps must be >= 1, got {self.steps}")
        if self.temperature < 0:
            raise PlanError(f"{self.target}: temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.top_p <= 1:
            raise PlanError(f"{self.target}: top_p must be in [0, 1], got {self.top_p}")
        if self.guide is not None:
            object.__setattr__(self, "guide", tuple(self.guide))

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
            tokens = token_schedule(name, self.steps, total)
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


def _image_step(name: str, steps: int, temperature: float, guidance_scale: float) -> Step:
    return Step(name, "maskgit", steps=steps, temperature=temperature, temperature_schedule="onex:0.5:1.0"
                if temperature > 0 else "constant", guidance_scale=guidance_scale)


def preset(name: str, outputs: Sequence[str], *, steps: int = 8, temperature: float = 0.0,
           guidance_scale: float = 1.0, caption_temperature: float = 0.0) -> Plan:
    """A demo chain over the model's ``outputs`` (`FourM.config.domains_out`); modalities it lacks are skipped.

    ``rgb_to_all``: every output in one pass each (image tokens by MaskGIT in ``steps``, sequences
    autoregressively), conditioned on RGB. ``caption_to_rgb`` / ``det_to_rgb``: text -> CLIP-like tokens ->
    geometry (depth, normals, segmentation, edges) -> RGB tokens, each step conditioned on all before it.
    """
    outs = list(outputs)
    seq = [o for o in outs if get(o).kind is Kind.SEQUENCE]
    if name == "rgb_to_all":
        order = [o for o in outs if o not in seq and o != "tok_rgb@224"] + seq
    elif name in ("caption_to_rgb", "det_to_rgb"):
        source = name.split("_")[0]
        chain = ["tok_clip@224", "tok_dinov2@224", "tok_imagebind@224", "tok_depth@224", "tok_normal@224",
                 "tok_semseg@224", "tok_sam_edge@224", "tok_canny_edge@224", "tok_rgb@224"]
        order = [c for c in chain if c in outs] + [s for s in seq if s != source]
    else:
        raise PlanError(f"unknown preset {name!r}; choose rgb_to_all, caption_to_rgb or det_to_rgb")
    if not order:
        raise PlanError(f"preset {name!r}: the model outputs none of its targets ({', '.join(outs)})")
    made = [Step(o, "autoregressive", temperature=caption_temperature) if o in seq
            else _image_step(o, steps, temperature, guidance_scale) for o in order]
    return Plan(tuple(made), grow_conditioning=False, name=name)
