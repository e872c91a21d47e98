"""The sections of a run's config, one frozen dataclass each: model, masking, optimizer, data, training, LoRA and
fine-tuning; and the model size presets as one table.

Each checks its fields when built (`fields.check_fields`, with the values each field allows declared beside it by
`fields.rule`), then what spans fields (``dim`` divisible by ``num_heads``, registered domains, ...).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from .. import modalities
from .fields import ConfigError, check_fields, rule

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
