"""Fine-tuning: a run that starts from trained weights (``finetune`` section, `config.FinetuneConfig`).

    plan = load_init(model, "src/polymodal/weights/default")     # a fresh FourM of the recipe, filled by name
    frozen = freeze(model, ["encoder"])                            # requires_grad False: no gradient, no state
    print(summary(model, plan, frozen))

The recipe's model is built fresh (under the run's seed), then every tensor (parameters and buffers) the starting
weights hold under the same name with the same shape is copied in. What the weights lack stays as initialized: the
embeddings and heads of an added domain are those of a from-scratch model with the same seed. What the recipe
lacks (a dropped domain) is ignored. The weights are read as a model (`FourM.from_pretrained`: polymodal folders,
training checkpoints ``RUN/checkpoints/step_N``, official 4M-7/4M-21 folders and Hub ids), a bundle through its
``model/``, so every tensor is compared in polymodal's layout (shared modality embeddings filled, zero biases of
bias-free official files dropped).

Refused, one line per problem: an architecture field that differs (``dim``, depths, heads, MLP, biases; tied
tables or shared modality embeddings in the recipe but not in the weights), and a tensor of a domain both have
whose shape differs (another vocabulary, another grid), unless the domain is listed in ``finetune.reinit``, which
starts it fresh.

A resumed run reads the starting weights again (so they must still be there, as the data must) to rebuild the same
plan and parameter groups, but copies nothing from them: its weights are its checkpoint's.

Groups (`config.finetune_groups`): ``embeddings`` (encoder input embeddings), ``encoder`` (blocks and norm),
``decoder`` (context projection, blocks, norm, mask token), ``heads`` (``decoder_embeddings``: target query
embeddings and vocabulary projections), and per domain ``embeddings.<domain>`` / ``heads.<domain>``. A tensor
shared by several names (tied sequence tables serve the encoder embedding and the head) is frozen when any of its
names is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import hub
from ..config import FINETUNE_GROUPS, ConfigError, ExperimentConfig, ModelConfig

# Fields of the model config that change what a loaded tensor computes: they must be the starting weights'.
ARCHITECTURE = ("dim", "encoder_depth", "decoder_depth", "num_heads", "mlp_ratio", "act", "gated_mlp", "qkv_bias",
                "proj_bias", "mlp_bias", "norm_bias", "qk_norm")
# Tensors the recipe's model shares (tied text tables, one modality embedding per domain) that the starting weights
# keep apart would load one of several different values: refused when the recipe has the field and they do not.
SHARING = ("tie_sequence_tables", "share_modality_embeddings")
# The top-level modules of `FourM` and the group each belongs to (embeddings and heads split further by domain).
_TOP_GROUPS = {"encoder_embeddings": "embeddings", "decoder_embeddings": "heads", "encoder": "encoder",
               "encoder_norm": "encoder", "decoder_proj_context": "decoder", "decoder": "decoder",
               "decoder_norm": "decoder", "mask_token": "decoder"}
_MAX_LINES = 20  # mismatch lines shown; the rest counted
_HUB_FILES = ("*.json", "*.safetensors", "*.md")


class InitMismatch(ConfigError):
    """Starting weights that do not fit the recipe's model, or that cannot be read (a ConfigError: the command
    line exits with code 2)."""


@dataclass
class InitPlan:
    """Which of the model's state-dict names come from the starting weights.

    ``loaded``: names copied (same name and shape); ``fresh``: the model's names that keep their initialization
    (domains the weights lack, domains under ``reinit``; not the names of a tied table that loads through another
    name); ``ignored``: the weights' names the model lacks
    (dropped domains, official decoder token tables); ``source``: the folder read, ``kind`` what it was.
    """

    source: Path
    kind: str
    loaded: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)
    reinit: tuple[str, ...] = ()


@dataclass
class Finetune:
    """What `prepare` did to the model: the plan (None without ``init_from``), the frozen names, and the learning
    rate scale of the loaded parameters by name for `optim.build_optimizer` (None: all at the schedule's rate)."""

    plan: InitPlan | None
    frozen: set[str]
    lr_scale: dict[str, float] | None
    table: str


# ------------------------------------------------------------------------------------------------- groups


def group_of(name: str) -> tuple[str, str | None]:
    """``(group, domain or None)`` of a state-dict name of a `FourM`:
    ``encoder_embeddings.caption.token_emb.weight`` -> ``("embeddings", "caption")``."""
    parts = name.split(".")
    top = _TOP_GROUPS.get(parts[0])
    if top is None:
        raise ValueError(f"parameter {name!r} is in none of the groups {', '.join(FINETUNE_GROUPS)} (its module "
                         f"{parts[0]!r} is not one of FourM's: {', '.join(_TOP_GROUPS)})")
    return top, (parts[1] if top in ("embeddings", "heads") else None)


def group_names(name: str) -> tuple[str, ...]:
    """The group names a state-dict name falls under: its group and, for embeddings and heads, its domain's."""
    top, domain = group_of(name)
    return (top,) if domain is None else (top, f"{top}.{domain}")


def _param_names(model: nn.Module) -> dict[int, list[str]]:
    """Every name of each parameter, keyed by the parameter's id (a tied table has several)."""
    out: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        out.setdefault(id(p), []).append(name)
    return out


def freeze(model: nn.Module, groups: Iterable[str]) -> set[str]:
    """Set ``requires_grad=False`` on every parameter with a name in one of ``groups`` (checked against
    `config.finetune_groups` by the config); returns the frozen parameters' names (every name of a shared one)."""
    groups = set(groups)
    frozen: set[str] = set()
    if not groups:
        return frozen
    params = dict(model.named_parameters(remove_duplicate=False))
    for names in _param_names(model).values():
        if any(g in groups for n in names for g in group_names(n)):
            params[names[0]].requires_grad_(False)
            frozen.update(names)
    return frozen


# ------------------------------------------------------------------------------------------ starting weights


def resolve_source(init_from: str) -> tuple[Path, str]:
    """The model folder ``init_from`` names and what it is: a bundle's ``model/`` (its modalities registered), a
    training checkpoint, an official 4M folder, a polymodal model folder. A Hub id resolves through the cache."""
    from ..pipeline.bundle import BUNDLE_FILE, read_bundle_file, register_specs

    try:
        path = hub.resolve(init_from, allow_patterns=_HUB_FILES, what="folder")
    except (OSError, ValueError) as e:
        raise InitMismatch(f"finetune.init_from: {e}") from None
    if path.is_dir() and (path / BUNDLE_FILE).is_file():
        try:  # a damaged pipeline.json, a modality it defines otherwise than this process
            info = read_bundle_file(path / BUNDLE_FILE)
            register_specs(info.get("modalities", {}), str(path))
        except ValueError as e:
            raise InitMismatch(f"finetune.init_from: {e}") from None
        return path / info.get("model", "model"), "bundle"
    if path.is_dir() and not any(path.glob("*.safetensors")) and (path / "checkpoints").is_dir():
        raise InitMismatch(f"finetune.init_from: {path} is a run folder; name its release/ or one of its "
                           "checkpoints/step_N folders")
    kind = "safetensors file" if path.is_file() else "model folder"
    if path.is_dir() and (path / "config.json").is_file():
        try:
            raw = json.loads((path / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raw = {}  # the loader names the damaged file
        if isinstance(raw, dict):
            kind = ("training checkpoint" if "objective" in raw else
                    "official 4M folder" if "_class_name" not in raw else "polymodal model folder")
    return path, kind


def load_source(init_from: str) -> tuple[nn.Module, Path, str]:
    """The starting weights as a model (float32, CPU), without touching the global random state (its fresh
    construction draws initial weights that loading then replaces)."""
    from ..model import FourM

    path, kind = resolve_source(init_from)
    with torch.random.fork_rng(devices=[]):
        try:
            source = FourM.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:  # CheckpointError, ConfigError, an unknown modality
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)  # str() of a KeyError quotes it
            raise InitMismatch(f"finetune.init_from: {msg}") from None
    return source, path, kind


def source_config(init_from: str) -> ModelConfig:
    """The model config of the starting weights: a recipe builds its model from it (the same architecture and
    vocabularies), adding or dropping domains. Reads the whole model (a bundle registers its modalities)."""
    return load_source(init_from)[0].config


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def plan_init(model: nn.Module, source: nn.Module, *, reinit: Iterable[str] = (), path: Path = Path("."),
              kind: str = "model folder") -> InitPlan:
    """Match ``model``'s state dict against ``source``'s by name and shape; raises `InitMismatch` listing every
    architecture field that differs, or else every tensor of a domain both have whose shape differs (domains in
    ``reinit`` excepted: they start fresh)."""
    reinit = tuple(reinit)
    mine, theirs = model.config, source.config
    where = f"finetune.init_from {path}"
    lines = [f"model.{f}: {getattr(theirs, f)!r} in the starting weights, {getattr(mine, f)!r} in the recipe"
             for f in ARCHITECTURE if getattr(mine, f) != getattr(theirs, f)]
    lines += [f"model.{f}: False in the starting weights, True in the recipe (their separate tensors cannot load "
              "into one)" for f in SHARING if getattr(mine, f) and not getattr(theirs, f)]
    if lines:
        raise InitMismatch(f"{where} has another architecture than the recipe's model:\n  " + "\n  ".join(lines))
    ours, src = model.state_dict(), source.state_dict()
    plan = InitPlan(path, kind, reinit=reinit)
    bad = []
    for name, t in ours.items():
        _, domain = group_of(name)
        if domain is not None and domain in reinit:
            plan.fresh.add(name)
        elif name not in src:
            if domain is None:  # same architecture, so only a differently built model gets here
                bad.append(f"{name}: absent from the starting weights, {_shape(t)} in the model")
            plan.fresh.add(name)
        elif _shape(src[name]) != _shape(t):
            bad.append(f"{domain or 'tensor'}: {name} is {_shape(src[name])} in the starting weights, {_shape(t)} in "
                       "the model")
        else:
            plan.loaded.add(name)
    if bad:
        more = f"\n  ... and {len(bad) - _MAX_LINES} more" if len(bad) > _MAX_LINES else ""
        raise InitMismatch(f"{where} does not fit the recipe's model (list a domain under finetune.reinit to start "
                           "it fresh):\n  " + "\n  ".join(bad[:_MAX_LINES]) + more)
    plan.ignored = set(src) - set(ours)
    # A tensor with several names (a tied text table) loads through any one of them: none of its names is fresh.
    for names in _param_names(model).values():
        if any(n in plan.loaded for n in names):
            plan.fresh.difference_update(names)
    return plan


def apply_plan(model: nn.Module, source: nn.Module, plan: InitPlan) -> None:
    """Copy the planned tensors of ``source`` into ``model`` (in place, cast to the model's dtype)."""
    state = model.state_dict()
    src = source.state_dict()
    with torch.no_grad():
        for name in sorted(plan.loaded):
            state[name].copy_(src[name])


def load_init(model: nn.Module, init_from: str, *, reinit: Iterable[str] = (), copy: bool = True) -> InitPlan:
    """Fill ``model`` (a fresh `FourM`) from the weights ``init_from`` names (see the module docstring); with
    ``copy=False`` only plan (a resumed run: its checkpoint holds the weights). Returns the plan."""
    source, path, kind = load_source(init_from)
    plan = plan_init(model, source, reinit=reinit, path=path, kind=kind)
    if copy:
        apply_plan(model, source, plan)
    return plan


# ---------------------------------------------------------------------------------------------- summary


def _by_domain(names: Iterable[str]) -> str:
    """``embeddings.caption (3 tensors), heads.det (4 tensors)`` for state-dict names of embeddings and heads."""
    counts: dict[str, int] = {}
    for n in sorted(names, key=lambda n: (FINETUNE_GROUPS.index(group_of(n)[0]), n)):
        g = group_names(n)
        counts[g[-1]] = counts.get(g[-1], 0) + 1
    return ", ".join(f"{g} ({k} tensor{'s' if k > 1 else ''})" for g, k in counts.items()) or "none"


def summary(model: nn.Module, plan: InitPlan | None, frozen: set[str], *, loaded_lr_scale: float = 1.0,
            resumed: bool = False) -> str:
    """A table of the model's parameters per group: tensors, parameters, loaded, new (fresh) and frozen
    (counts of values), with a header naming the starting weights and lines naming the new and ignored domains."""
    rows = {g: [0, 0, 0, 0, 0] for g in FINETUNE_GROUPS}
    for names in _param_names(model).values():
        p = model.get_parameter(names[0])
        row = rows[group_of(names[0])[0]]
        row[0] += 1
        row[1] += p.numel()
        is_loaded = plan is not None and any(n in plan.loaded for n in names)
        row[2] += p.numel() if is_loaded else 0
        row[3] += 0 if is_loaded else p.numel()
        row[4] += p.numel() if names[0] in frozen else 0
    rows["total"] = [sum(r[i] for r in rows.values()) for i in range(5)]
    lines = []
    if plan is None:
        lines.append("init_from: none (a fresh model)")
    else:
        how = "planned only, the weights are the checkpoint's" if resumed else "loaded"
        lines.append(f"init_from: {plan.source} ({plan.kind}): {len(plan.loaded)} tensors {how}, "
                     f"{len(plan.fresh)} new, {len(plan.ignored)} of its tensors ignored")
    lines.append(f"{'group':<12}{'tensors':>9}{'params':>13}{'loaded':>13}{'new':>13}{'frozen':>13}")
    for g, r in rows.items():
        lines.append(f"{g:<12}{r[0]:>9,}{r[1]:>13,}{r[2]:>13,}{r[3]:>13,}{r[4]:>13,}")
    if plan is not None:
        new = [n for n in plan.fresh if group_of(n)[1] not in plan.reinit]
        lines.append(f"new: {_by_domain(new)}")
        if plan.reinit:
            lines.append(f"reinitialized: {_by_domain(n for n in plan.fresh if n not in new)}")
        lines.append(f"ignored (not in the recipe): {_by_domain(plan.ignored)}")
        lines.append(f"learning rate: loaded x{loaded_lr_scale:g}, new x1")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the loop


def prepare(model: nn.Module, cfg: ExperimentConfig, *, load: bool) -> Finetune:
    """What the training loop does with ``cfg.finetune`` to a freshly built model: fill it from ``init_from``
    (``load``: a run that starts; False: a resumed run, planned only), freeze the named groups, and give the
    loaded parameters their learning rate scale."""
    ft = cfg.finetune
    if not ft.init_from:
        if ft.reinit:
            raise ConfigError("finetune.reinit needs finetune.init_from (without it every domain starts fresh)")
        if ft.loaded_lr_scale != 1.0:
            raise ConfigError(f"finetune.loaded_lr_scale={ft.loaded_lr_scale:g} needs finetune.init_from "
                              "(without it nothing is loaded)")
    if not ft.init_from and not ft.freeze:
        return Finetune(None, set(), None, "")
    if not isinstance(cfg.model, ModelConfig):
        raise ConfigError(f"finetune applies to 4M models (objective 'fourm'), not to objective {cfg.objective!r}")
    plan = load_init(model, ft.init_from, reinit=ft.reinit, copy=load) if ft.init_from else None
    frozen = freeze(model, ft.freeze)
    scale = None
    if plan is not None and ft.loaded_lr_scale != 1.0:
        scale = {n: ft.loaded_lr_scale for names in _param_names(model).values() if not plan.fresh.intersection(names)
                 for n in names}
    table = summary(model, plan, frozen, loaded_lr_scale=ft.loaded_lr_scale, resumed=not load)
    return Finetune(plan, frozen, scale, table)
