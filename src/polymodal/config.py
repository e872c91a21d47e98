"""Typed configs: frozen dataclasses with a strict JSON round trip, and the model size presets as one table."""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import modalities

T = TypeVar("T")

# name -> (dim, encoder_depth, decoder_depth, num_heads). "test" is the real configuration every test uses.
MODEL_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "test": (64, 2, 2, 4),
    "tiny": (384, 6, 6, 6),
    "small": (512, 8, 8, 8),
    "B": (768, 12, 12, 12),
    "L": (1024, 24, 24, 16),
    "XL": (2048, 24, 24, 32),
}


class ConfigError(ValueError):
    """A config that cannot be built: unknown or missing fields, values of the wrong type."""


@dataclass(frozen=True)
class ModelConfig:
    """The 4M encoder-decoder.

    ``domains_in`` / ``domains_out`` name registered modalities. ``vocab_sizes`` overrides a modality's registered
    vocabulary (official files with shrunk vocabularies, user tokenizers of another size).
    """

    domains_in: tuple[str, ...]
    domains_out: tuple[str, ...]
    dim: int = 768
    encoder_depth: int = 12
    decoder_depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    act: str = "gelu"  # "gelu" or "silu"
    gated_mlp: bool = False  # SwiGLU when True
    qkv_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True
    qk_norm: bool = False
    share_modality_embeddings: bool = True
    # One (V, D) table serves every sequence modality of the same vocabulary as encoder embedding, decoder
    # embedding and output projection (T5-style tying). Not in official 4M files; it keeps small models small:
    # with a 4.6k vocabulary, four text-like modalities otherwise carry 12 tables.
    tie_sequence_tables: bool = False
    norm_eps: float = 1e-6
    init_std: float = 0.02
    vocab_sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains_in", tuple(self.domains_in))
        object.__setattr__(self, "domains_out", tuple(self.domains_out))
        object.__setattr__(self, "vocab_sizes", {str(k): int(v) for k, v in dict(self.vocab_sizes).items()})
        if self.dim % self.num_heads:
            raise ConfigError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.act not in ("gelu", "silu"):
            raise ConfigError(f"act must be 'gelu' or 'silu', got {self.act!r}")
        for name in (*self.domains_in, *self.domains_out, *self.vocab_sizes):
            modalities.get(name)  # raises with the closest names
        for name in self.domains_out:
            if modalities.get(name).is_input_only:
                raise ConfigError(f"modality {name!r} is input-only ({modalities.get(name).kind.value}); "
                                  "it cannot be in domains_out")
        if not self.domains_in and not self.domains_out:
            raise ConfigError("a model needs at least one domain in domains_in or domains_out")

    @property
    def mlp_hidden(self) -> int:
        # SwiGLU keeps the parameter count of a GELU MLP by using 2/3 of the hidden width (as 4M does).
        if self.gated_mlp:
            return int(2 * self.mlp_ratio * self.dim / 3)
        return int(self.mlp_ratio * self.dim)

    def modality(self, name: str) -> modalities.Modality:
        """The registered modality with this config's vocabulary override applied."""
        mod = modalities.get(name)
        if name in self.vocab_sizes and mod.vocab_size != self.vocab_sizes[name]:
            mod = mod.replace(vocab_size=self.vocab_sizes[name])
        return mod

    @classmethod
    def preset(cls, size: str, *, domains_in, domains_out, **overrides) -> ModelConfig:
        """A config of a named size (see `MODEL_PRESETS`), with 4M-21's layer choices unless overridden."""
        if size not in MODEL_PRESETS:
            raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_PRESETS)}")
        dim, enc, dec, heads = MODEL_PRESETS[size]
        base = dict(dim=dim, encoder_depth=enc, decoder_depth=dec, num_heads=heads, act="silu", gated_mlp=True,
                    qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False,
                    share_modality_embeddings=False)
        base.update(overrides)
        return cls(domains_in=domains_in, domains_out=domains_out, **base)


@dataclass(frozen=True)
class MaskingConfig:
    """4M's input/target sampling: fixed token budgets spread over modalities by a mixture of Dirichlets.

    See `polymodal.data.masking` for what each field does to a sample.
    """

    num_input_tokens: int = 128
    num_target_tokens: int = 128
    mixture: str = "uniform"  # a named mixture (data.masking.MIXTURES): "uniform" (alpha 1 over all) or "4m21"
    input_alphas: dict[str, float] = field(default_factory=dict)  # per-modality alpha, in every mixture component
    target_alphas: dict[str, float] = field(default_factory=dict)
    keep_schemes: dict[str, str] = field(default_factory=dict)  # sequence name -> "random" | "all" | "binary"
    # Budget left over, handed out again over the modalities with room: "clamped" (what a modality's size cut
    # off), "all" (also what span masking left unused in sequences: exact totals), "none" (4M: dropped).
    refill: str = "clamped"
    sequence_width: str = "tight"  # sequence values width: "tight" (batch max) or "fixed" (2 * max_length + 2)

    def __post_init__(self) -> None:
        for name, field_ in (("input_alphas", self.input_alphas), ("target_alphas", self.target_alphas),
                             ("keep_schemes", self.keep_schemes)):
            object.__setattr__(self, name, dict(field_))
        if self.num_input_tokens < 0 or self.num_target_tokens < 0:
            raise ConfigError("masking.num_input_tokens and num_target_tokens must be >= 0")
        if any(a < 0 for a in (*self.input_alphas.values(), *self.target_alphas.values())):
            raise ConfigError("masking alphas must be >= 0")
        bad = {k: v for k, v in self.keep_schemes.items() if v not in ("random", "all", "binary")}
        if bad:
            raise ConfigError(f"masking.keep_schemes must be 'random', 'all' or 'binary', got {bad}")
        if self.refill not in ("none", "clamped", "all"):
            raise ConfigError(f"masking.refill must be 'none', 'clamped' or 'all', got {self.refill!r}")
        if self.sequence_width not in ("tight", "fixed"):
            raise ConfigError(f"masking.sequence_width must be 'tight' or 'fixed', got {self.sequence_width!r}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with 4M's recipe; the peak learning rate is ``base_lr * global_batch / 256``."""

    base_lr: float = 1e-4
    final_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup: float = 0.05  # a fraction of the run if < 1, else an absolute count in `unit`
    unit: str = "steps"  # "steps" or "tokens": what warmup and the schedule count
    schedule: str = "cosine"  # "cosine", "linear" or "constant" after warmup
    clip_grad: float = 1.0  # max global gradient norm; 0 disables clipping
    # Weight decay on embedding tables, positions, modality embeddings and the mask token. 4M's recipe decays them
    # (only norms and biases are exempt); polymodal's default exempts them, as most ViT recipes do.
    decay_embeddings: bool = False
    # Row-sparse gradients for every embedding table, stepped by `train.optim.RowSparseAdamW` (the same AdamW
    # update): the step then touches only the rows a batch looked up instead of whole (vocabulary x dim) tables,
    # which dominates the step of small models with 4M-21's vocabularies. A single process only.
    sparse_embeddings: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.unit not in ("steps", "tokens"):
            raise ConfigError(f"optim.unit must be 'steps' or 'tokens', got {self.unit!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where batches come from. ``source`` names a registered data source (see train.objectives), or is
    ``"tokens"``: pre-tokenized datasets streamed by `data.loader` (train.token_data)."""

    source: str = "synthetic_tokens"
    path: str = ""  # dataset folder, for sources that read one
    num_samples: int = 100_000  # size of an index-addressed source (sample i depends on (seed, i))
    val_samples: int = 256  # held-out samples (indices past num_samples) for validation
    seed: int = 0
    workers: int = 0  # data-loader worker processes (0: in the training process)
    # Samples masked together in one sampler call (much faster than one by one). Masks depend on
    # (seed, step, chunk), so every rank's micro-batch must hold whole chunks: a multiple of mask_chunk.
    mask_chunk: int = 8
    # source="tokens": pre-tokenized datasets (data.loader). ``path`` alone, or a mixture {path: weight}; a path to
    # .txt files is a text-only source whose lines become captions (tokenized with ``text_tokenizer``).
    mixture: dict[str, float] = field(default_factory=dict)
    text_tokenizer: str = ""
    val_path: str = ""  # source="tokens": a held-out token dataset to validate on (default: the first dataset's head)
    shuffle_buffer: int = 1000  # samples per source in each reader's shuffle buffer
    on_bad_shard: str = "raise"  # a truncated token shard: "raise" (its name in the error) or "skip" (a warning)


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "runs/default"
    steps: int = 1000  # optimizer steps
    # Pause after this step (0: run to `steps`): checkpoint and release there, with the schedule still that of
    # `steps`, so a rerun with a larger stop_at (or none) continues the same run. For time-boxed machines, and for
    # comparing runs at equal compute part-way through their schedule.
    stop_at: int = 0
    batch_size: int = 64  # global batch (all ranks, all accumulation micro-steps)
    grad_accum: int = 1  # micro-batches per optimizer step on each rank
    precision: str = "fp32"  # "fp32" or "bf16" (autocast, fp32 master weights)
    parallel: str = "auto"  # "auto" (DDP when several processes), "ddp", "fsdp", "none"
    activation_checkpointing: bool = False
    compile: bool = False
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # validation loss every N steps; 0: only at the end
    save_every: int = 100  # checkpoint every N steps (and at the end); 0: only at the end
    keep_last: int = 2  # checkpoints kept besides the best one
    tensorboard: bool = True
    progress: bool = True  # a progress bar on rank 0

    def __post_init__(self) -> None:
        if self.stop_at < 0:
            raise ConfigError(f"train.stop_at must be >= 0 (0: run to train.steps), got {self.stop_at}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.parallel not in ("auto", "ddp", "fsdp", "none"):
            raise ConfigError(f"train.parallel must be auto, ddp, fsdp or none, got {self.parallel!r}")


# Objective name -> the dataclass of its model config (tokenizer objectives add theirs).
MODEL_CONFIG_CLASSES: dict[str, type] = {"fourm": ModelConfig}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs; saved as ``config.json`` beside every checkpoint."""

    objective: str
    model: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        if self.objective not in MODEL_CONFIG_CLASSES:
            raise ConfigError(f"unknown objective {self.objective!r}; known: {', '.join(MODEL_CONFIG_CLASSES)}")
        cls = MODEL_CONFIG_CLASSES[self.objective]
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", from_dict(cls, self.model, source="model"))
        elif not isinstance(self.model, cls):
            raise ConfigError(f"objective {self.objective!r} needs a {cls.__name__}, got {type(self.model).__name__}")


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
    return from_dict(cls, data, source=str(path))
