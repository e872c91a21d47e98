"""Typed configs: frozen dataclasses with a strict JSON round trip, and the model size presets as one table.

Every field is checked when a config is built (`check_fields`, first thing in each ``__post_init__``): its type
from the annotation (an ``int`` takes neither 2.5 nor "abc", a ``bool`` only true/false, a ``float`` only finite
numbers) and the values it allows, declared beside it with `rule`. A bad value is one line naming the field, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import modalities

T = TypeVar("T")

# name -> (dim, encoder_depth, decoder_depth, num_heads). "test" is the real configuration every test uses.
# ModelConfig's own defaults are the DEFAULT_SIZE row: ModelConfig(...) equals ModelConfig.preset(DEFAULT_SIZE, ...).
MODEL_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "test": (64, 2, 2, 4),
    "tiny": (384, 6, 6, 6),
    "small": (512, 8, 8, 8),
    "B": (768, 12, 12, 12),
    "L": (1024, 24, 24, 16),
    "XL": (2048, 24, 24, 32),
}
DEFAULT_SIZE = "B"


class ConfigError(ValueError):
    """A config that cannot be built: unknown or missing fields, values of the wrong type or out of range."""


# ------------------------------------------------------------------------------------------ field rules


@dataclass(frozen=True)
class Rule:
    """The values a field allows besides its annotated type: bounds (numbers, and every item of a list or dict
    of numbers) or a set of choices."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def allows(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else None
        high = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return ""


def rule(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: float | None = None,
         gt: float | None = None, le: float | None = None, lt: float | None = None,
         choices: tuple | None = None) -> Any:
    """A dataclass field with the values it allows (see `Rule`); `check_fields` enforces it."""
    meta = {"rule": Rule(ge, gt, le, lt, tuple(choices) if choices is not None else None)}
    return field(default=default, default_factory=factory, metadata=meta)


_HINTS: dict[type, dict[str, Any]] = {}
_KIND = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
         float: ("a finite number", "finite numbers"), str: ("a string", "strings")}


def _kind(tp: Any, r: Rule | None, *, plural: bool = False) -> str:
    """What a value of ``tp`` under ``r`` may be, in words: "an integer >= 1", "one of 'a', 'b'"."""
    if r is not None and r.choices is not None:
        return r.describe()
    words = _KIND.get(tp, (getattr(tp, "__name__", str(tp)),) * 2)[plural]
    return f"{words} {r.describe()}".rstrip() if r is not None else words


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(tp: Any, value: Any, r: Rule | None) -> tuple[bool, Any]:
    """Whether ``value`` is a ``tp`` allowed by ``r``, and the value normalized (an int for an integral number,
    so that ``train.steps=1e4`` works while 2.5 does not)."""
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        if isinstance(value, float) and value.is_integer():  # 1e4 is a float in JSON
            value = int(value)
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif dataclasses.is_dataclass(tp):
        ok = isinstance(value, tp)
    else:  # a type the checker does not know (Any): nothing to check
        return True, value
    return ok and (r is None or r.allows(value)), value


def _check(tp: Any, value: Any, r: Rule | None, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` and the rule ``r`` (applied to each item of a list or
    dict); returns it normalized (lists become tuples) or raises one line naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        item = args[0]
        fixed = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        what = f"a list of {f'{fixed} ' if fixed else ''}{_kind(item, r, plural=True)}"
        checked = [_scalar(item, v, r) for v in value] if isinstance(value, (list, tuple)) else [(False, None)]
        if not all(ok for ok, _ in checked) or (fixed and len(checked) != fixed):
            raise ConfigError(f"{where}: got {_shown(value)}, expected {what}")
        return tuple(v for _, v in checked)
    if origin is dict:
        key_tp, item = args
        if not isinstance(value, Mapping) or not all(_scalar(key_tp, k, None)[0] for k in value):
            raise ConfigError(f"{where}: got {_shown(value)}, expected an object mapping names to "
                              f"{_kind(item, r, plural=True)}")
        out = {}
        for k, v in value.items():
            ok, out[k] = _scalar(item, v, r)
            if not ok:
                raise ConfigError(f"{where}[{k!r}]: got {_shown(v)}, expected {_kind(item, r)}")
        return out
    ok, checked = _scalar(tp, value, r)
    if not ok:
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"{where}: got a {type(value).__name__}, expected a {tp.__name__}")
        raise ConfigError(f"{where}: got {_shown(value)}, expected {_kind(tp, r)}")
    return checked


def check_fields(cfg: Any, section: str) -> None:
    """Check every field of a dataclass against its annotation and `rule`, naming it ``section.field``; lists
    become tuples and integral numbers ints (the dataclass may be frozen). Call it first in ``__post_init__``."""
    cls = type(cfg)
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        checked = _check(_HINTS[cls][f.name], value, f.metadata.get("rule"),
                         f"{section}.{f.name}" if section else f.name)
        if checked is not value:
            object.__setattr__(cfg, f.name, checked)


@dataclass(frozen=True)
class ModelConfig:
    """The 4M encoder-decoder.

    ``domains_in`` / ``domains_out`` name registered modalities. ``vocab_sizes`` overrides a modality's registered
    vocabulary (official files with shrunk vocabularies, user tokenizers of another size).

    One set of defaults: 4M-21's layer choices (SwiGLU, no biases, a modality embedding per side) at the
    `MODEL_PRESETS` size `DEFAULT_SIZE`; `preset` changes only the size. Official 4M-7 files (GELU with biases,
    shared modality embeddings) set every field from their own config (`model.checkpoint.config_from_official`).
    """

    domains_in: tuple[str, ...]
    domains_out: tuple[str, ...]
    dim: int = rule(MODEL_PRESETS[DEFAULT_SIZE][0], ge=1)
    encoder_depth: int = rule(MODEL_PRESETS[DEFAULT_SIZE][1], ge=0)
    decoder_depth: int = rule(MODEL_PRESETS[DEFAULT_SIZE][2], ge=0)
    num_heads: int = rule(MODEL_PRESETS[DEFAULT_SIZE][3], ge=1)
    mlp_ratio: float = rule(4.0, gt=0)
    act: str = rule("silu", choices=("gelu", "silu"))
    gated_mlp: bool = True  # SwiGLU when True
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    share_modality_embeddings: bool = False
    # One (V, D) table serves every sequence modality of the same vocabulary as encoder embedding, decoder
    # embedding and output projection (T5-style tying). Not in official 4M files; it keeps small models small:
    # with a 4.6k vocabulary, four text-like modalities otherwise carry 12 tables.
    tie_sequence_tables: bool = False
    norm_eps: float = rule(1e-6, gt=0)
    init_std: float = rule(0.02, ge=0)
    vocab_sizes: dict[str, int] = rule(factory=dict, ge=1)

    def __post_init__(self) -> None:
        check_fields(self, "model")
        if self.dim % self.num_heads:
            raise ConfigError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
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
        """A config of a named size (see `MODEL_PRESETS`); every other field keeps its default unless overridden."""
        if size not in MODEL_PRESETS:
            raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_PRESETS)}")
        dim, enc, dec, heads = MODEL_PRESETS[size]
        sizes = dict(dim=dim, encoder_depth=enc, decoder_depth=dec, num_heads=heads)
        return cls(domains_in=domains_in, domains_out=domains_out, **{**sizes, **overrides})


@dataclass(frozen=True)
class MaskingConfig:
    """4M's input/target sampling: fixed token budgets spread over modalities by a mixture of Dirichlets.

    See `polymodal.data.masking` for what each field does to a sample.
    """

    num_input_tokens: int = rule(128, ge=0)
    num_target_tokens: int = rule(128, ge=0)
    # A named mixture (data.masking.MIXTURES, which checks the name): "uniform" (alpha 1 over all) or "4m21".
    mixture: str = rule("uniform", choices=("uniform", "4m21"))  # the names of data.masking.MIXTURES
    input_alphas: dict[str, float] = rule(factory=dict, ge=0)  # per-modality alpha, in every mixture component
    target_alphas: dict[str, float] = rule(factory=dict, ge=0)
    keep_schemes: dict[str, str] = rule(factory=dict, choices=("random", "all", "binary"))  # sequence name -> scheme
    # Budget left over, handed out again over the modalities with room: "clamped" (what a modality's size cut
    # off), "all" (also what span masking left unused in sequences: exact totals), "none" (4M: dropped).
    refill: str = rule("clamped", choices=("none", "clamped", "all"))
    # Sequence values width: "tight" (batch max) or "fixed" (2 * max_length + 2).
    sequence_width: str = rule("tight", choices=("tight", "fixed"))

    def __post_init__(self) -> None:
        check_fields(self, "masking")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with 4M's recipe; the peak learning rate is ``base_lr * global_batch / 256``."""

    base_lr: float = rule(1e-4, gt=0)
    final_lr: float = rule(1e-6, ge=0)
    weight_decay: float = rule(0.05, ge=0)
    betas: tuple[float, float] = rule((0.9, 0.95), ge=0, lt=1)
    eps: float = rule(1e-8, gt=0)
    warmup: float = rule(0.05, ge=0)  # a fraction of the run if < 1, else an absolute count in `unit`
    unit: str = rule("steps", choices=("steps", "tokens"))  # what warmup and the schedule count
    schedule: str = rule("cosine", choices=("cosine", "linear", "constant"))  # after warmup
    clip_grad: float = rule(1.0, ge=0)  # max global gradient norm; 0 disables clipping
    # Weight decay on embedding tables, positions, modality embeddings and the mask token. 4M's recipe decays them
    # (only norms and biases are exempt); polymodal's default exempts them, as most ViT recipes do.
    decay_embeddings: bool = False
    # Row-sparse gradients for every embedding table, stepped by `train.optim.RowSparseAdamW` (the same AdamW
    # update, not an approximation): a step then touches the rows that have ever been looked up instead of whole
    # (vocabulary x dim) tables, which dominate the step of small models with 4M-21's vocabularies. Applies to
    # one-process runs on the CPU (DDP's reducer and FSDP2 take dense gradients; on a GPU the dense kernel is
    # cheap and choosing rows would synchronize the host): the others stay dense.
    sparse_embeddings: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "optim")


@dataclass(frozen=True)
class DataConfig:
    """Where batches come from. ``source`` names an index-addressed source of `data.indexed.SOURCES`, or is
    ``"tokens"``: pre-tokenized datasets streamed by `data.loader` (`data.token_stream`)."""

    source: str = "synthetic_tokens"
    path: str = ""  # dataset folder, for sources that read one
    num_samples: int = rule(100_000, ge=1)  # size of an index-addressed source (sample i depends on (seed, i))
    val_samples: int = rule(256, ge=0)  # held-out samples (indices past num_samples) for validation
    seed: int = rule(0, ge=0)
    workers: int = rule(0, ge=0)  # data-loader worker processes (0: in the training process)
    # Samples masked together in one sampler call (much faster than one by one). Masks depend on
    # (seed, step, chunk), so every rank's micro-batch must hold whole chunks: a multiple of mask_chunk.
    mask_chunk: int = rule(8, ge=1)
    # source="tokens": pre-tokenized datasets (data.loader). ``path`` alone, or a mixture {path: weight}; a path to
    # .txt files is a text-only source whose lines become captions (tokenized with ``text_tokenizer``).
    mixture: dict[str, float] = rule(factory=dict, ge=0)
    text_tokenizer: str = ""
    val_path: str = ""  # source="tokens": a held-out token dataset to validate on (default: the first dataset's head)
    shuffle_buffer: int = rule(1000, ge=1)  # samples per source in each reader's shuffle buffer
    # A truncated token shard: "raise" (its name in the error) or "skip" (a warning).
    on_bad_shard: str = rule("raise", choices=("raise", "skip"))

    def __post_init__(self) -> None:
        check_fields(self, "data")
        # read only by the token stream: on any other source they would be ignored without a word
        for name in ("mixture", "text_tokenizer", "val_path"):
            if getattr(self, name) and self.source != "tokens":
                raise ConfigError(f"data.{name}: set for data.source={self.source!r}, which does not read it (it "
                                  "is for data.source=tokens, pre-tokenized datasets)")


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "runs/default"
    steps: int = rule(1000, ge=1)  # optimizer steps
    # Pause after this step (0: run to `steps`): checkpoint and release there, with the schedule still that of
    # `steps`, so a rerun with a larger stop_at (or none) continues the same run. For time-boxed machines, and for
    # comparing runs at equal compute part-way through their schedule.
    stop_at: int = rule(0, ge=0)
    batch_size: int = rule(64, ge=1)  # global batch (all ranks, all accumulation micro-steps)
    grad_accum: int = rule(1, ge=1)  # micro-batches per optimizer step on each rank
    precision: str = rule("fp32", choices=("fp32", "bf16"))  # bf16: autocast, fp32 master weights
    # "auto": DDP when several processes.
    parallel: str = rule("auto", choices=("auto", "ddp", "fsdp", "none"))
    activation_checkpointing: bool = False
    compile: bool = False
    # The vocabulary projection fused with the cross-entropy (FourM.forward(logits=False), model.loss): the same
    # loss and gradients without the (n, V) logits, log-softmax and one-hot tensors. false: logits, then the loss.
    # DDP runs take the logits path whatever this says (see FourMObjective.loss).
    fused_loss: bool = True
    # bf16 on a CPU without bf16 instructions: autocast's bf16 products computed by float32 kernels on bf16-rounded
    # operands instead of torch's slow emulation (polymodal.nn.gemm). No effect in fp32, on GPUs or on CPUs with bf16.
    bf16_via_fp32: bool = True
    device: str = rule("auto", choices=("auto", "cpu", "cuda", "mps"))
    seed: int = rule(0, ge=0)
    log_every: int = rule(10, ge=1)
    eval_every: int = rule(0, ge=0)  # validation loss every N steps; 0: only at the end
    save_every: int = rule(100, ge=0)  # checkpoint every N steps (and at the end); 0: only at the end
    keep_last: int = rule(2, ge=1)  # checkpoints kept besides the best one
    tensorboard: bool = True
    progress: bool = True  # a progress bar on rank 0

    def __post_init__(self) -> None:
        check_fields(self, "train")
        if not self.out_dir.strip():  # `train.out_dir=$OUT` with OUT unset would run in the current folder
            raise ConfigError(f"train.out_dir: got {self.out_dir!r}, expected a folder for the run (\".\" for the "
                              "current one)")


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA adapters on the attention and MLP projections (`polymodal.nn.lora`); ``r = 0``: off (every parameter
    trains). With ``r >= 1`` only the adapters train, plus the parameters whose names start with a prefix in
    ``train`` (new modality embeddings and heads: ``"encoder_embeddings.<domain>"``, ``"decoder_embeddings.<domain>"``);
    the release then holds the merged model and ``adapters/`` (`polymodal.model.adapters`)."""

    r: int = rule(0, ge=0)
    alpha: float = rule(16.0, gt=0)  # the update is scaled by alpha / r
    dropout: float = rule(0.0, ge=0, lt=1)  # on the adapters' input only
    # attention's qkv / proj, cross-attention's q / kv, the MLP's fc1 / fc2 / fc3 (= polymodal.nn.lora.LORA_TARGETS)
    targets: tuple[str, ...] = rule(("qkv", "proj", "q", "kv", "fc1", "fc2", "fc3"),
                                    choices=("qkv", "proj", "q", "kv", "fc1", "fc2", "fc3"))
    train: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self, "lora")
        if self.r and not self.targets:
            raise ConfigError("lora.targets: empty; name at least one of qkv, proj, q, kv, fc1, fc2, fc3")


# Parameter groups of a 4M model that `FinetuneConfig.freeze` names (`finetune_groups`; `train.finetune` maps them
# to parameters): the encoder's input embeddings, the encoder, the decoder (context projection, blocks, norm, mask
# token) and the output heads (``decoder_embeddings``: each target's query embeddings and its vocabulary projection).
FINETUNE_GROUPS = ("embeddings", "encoder", "decoder", "heads")


def finetune_groups(model: ModelConfig) -> tuple[str, ...]:
    """Every group name `FinetuneConfig.freeze` may use for ``model``: the four of `FINETUNE_GROUPS`, then
    ``embeddings.<domain>`` per input and ``heads.<domain>`` per output."""
    return (*FINETUNE_GROUPS, *(f"embeddings.{d}" for d in model.domains_in),
            *(f"heads.{d}" for d in model.domains_out))


@dataclass(frozen=True)
class FinetuneConfig:
    """Start from trained weights instead of a fresh model (`train.finetune`). A resumed run may change none of it.

    ``init_from``: a polymodal model or bundle folder, a training checkpoint (``RUN/checkpoints/step_N``), an
    official 4M-7/4M-21 folder or Hub id; empty: a fresh model. Tensors load by name where the shapes match; the
    recipe's domains that the weights lack start fresh (as in a new model with the same seed), the weights' domains
    the recipe lacks are ignored. ``reinit``: domains that start fresh although the weights hold them (another
    vocabulary or grid: without it that is an error). ``freeze``: groups of `finetune_groups` held fixed (no
    gradient, no optimizer state). ``loaded_lr_scale``: the learning rate of loaded parameters, as a fraction of the
    schedule's (new ones take the schedule's). ``reinit`` and ``loaded_lr_scale`` without ``init_from`` are
    refused when the run starts (not here: command-line overrides apply one field at a time).
    """

    init_from: str = ""
    reinit: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    loaded_lr_scale: float = rule(1.0, gt=0)

    def __post_init__(self) -> None:
        check_fields(self, "finetune")

    def check_model(self, model: Any, objective: str) -> None:
        """The fields against the run's model config: domains and groups it has (one line naming the field)."""
        if self == FinetuneConfig():
            return
        if not isinstance(model, ModelConfig):
            raise ConfigError(f"finetune applies to 4M models (objective 'fourm'), not to objective {objective!r}")
        domains = tuple(dict.fromkeys(model.domains_in + model.domains_out))
        for name in self.reinit:
            if name not in domains:
                raise ConfigError(f"finetune.reinit: {name!r} is not a domain of the model (domains: "
                                  f"{', '.join(domains)})")
        groups = finetune_groups(model)
        for name in self.freeze:
            if name not in groups:
                close = difflib.get_close_matches(name, groups, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"finetune.freeze: no parameter group {name!r}{hint}; the groups are: "
                                  f"{', '.join(groups)}")


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
