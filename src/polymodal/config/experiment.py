"""A whole run's config (`ExperimentConfig`), the objectives it may name, and the JSON round trip and
command-line overrides of any config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .fields import ConfigError, check_fields
from .sections import DataConfig, FinetuneConfig, LoRAConfig, MaskingConfig, OptimConfig, TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective name in a config stands for: the dataclass of its ``model`` section and the class that
    trains it (a `train.objectives.Objective`), each as ``"module:attribute"``. Named by path and imported only when
    a config names the objective, so this module imports nothing above it and a config.json loads in a fresh
    interpreter whatever objective it trains."""

    model_config: str
    objective: str


# Every objective the training loop can run: one explicit table (no objective registers itself on import).
# A user's own objective is one more entry: OBJECTIVES["mine"] = ObjectiveSpec("pkg.mod:MyConfig", "pkg.mod:Mine").
OBJECTIVES: dict[str, ObjectiveSpec] = {
    "fourm": ObjectiveSpec("polymodal.config:ModelConfig", "polymodal.train.objectives:FourMObjective"),
    "tokenizer": ObjectiveSpec("polymodal.tokenizers.vqvae:VQVAEConfig",
                               "polymodal.train.tokenizer:TokenizerObjective"),
    "tokenizer_mlp": ObjectiveSpec("polymodal.tokenizers.mlp:MLPTokenizerConfig",
                                   "polymodal.train.tokenizer:TokenizerObjective"),
}


def import_path(path: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def objective_spec(name: str) -> ObjectiveSpec:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs; saved as ``config.json`` beside every checkpoint."""

    objective: str
    model: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        check_fields(self, "")
        cls = import_path(objective_spec(self.objective).model_config)
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", from_dict(cls, self.model, source="model"))
        elif not isinstance(self.model, cls):
            raise ConfigError(f"objective {self.objective!r} needs a {cls.__name__}, got {type(self.model).__name__}")
        self.finetune.check_model(self.model, self.objective)


# ------------------------------------------------------------------------------------------ JSON round trip


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "config") -> T:
    """Build `cls` from a dict, failing with the field names on unknown or missing keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(fields), n=3)
            hints.append(f"{k!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ConfigError(f"{source}: unknown field(s) for {cls.__name__}: {', '.join(hints)}")
    required = [n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{source}: missing required field(s) for {cls.__name__}: {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints.get(k)) and isinstance(v, dict):
            v = from_dict(hints[k], v, source=f"{source}.{k}")
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, KeyError) as e:
        raise ConfigError(f"{source}: cannot build {cls.__name__}: {e}") from e


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string: out_dir=runs/x


def _keys(cfg: Any, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out += _keys(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else [f"{prefix}{f.name}"]
    return out


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """``["train.steps=100", "model.dim=64"]`` applied to a nested frozen config; values are JSON (or strings).

    An unknown key fails with the closest valid keys.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        valid = _keys(cfg)
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        cfg = _replace_path(cfg, key.split("."), _parse_value(text))
    return cfg


def _replace_path(cfg: Any, path: list[str], value: Any) -> Any:
    head = path[0]
    if len(path) == 1:
        data = to_dict(cfg)
        data[head] = value
        return from_dict(type(cfg), data, source=f"override {head}")
    return dataclasses.replace(cfg, **{head: _replace_path(getattr(cfg, head), path[1:], value)})


def save_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    try:
        return from_dict(cls, data, source=str(path))
    except ConfigError as e:
        if str(e).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {e}") from None
