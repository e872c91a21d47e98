"""Model folders: ``config.json`` + ``model.safetensors``, in polymodal's format or 4M's official one, and
training checkpoints (``checkpoints/step_*``: the run's config, the model's weights) read as the model they hold.

Both share one state-dict layout (polymodal's parameter names are 4M's), so one loader reads both: the config
tells them apart (4M's has ``act_layer``; ours has ``_class_name``). Loading never unpickles.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import config as config_lib
from .. import hub, modalities
from ..config import ConfigError, ModelConfig
from ..modalities import Kind
from ..modalities import get as get_modality
from ..nn.loading import (
    assign_state,
    check_dtype,
    parameters_on_meta,
    read_safetensors,
    safetensors_shapes,
    target_dtypes,
)
from ..nn.lora import merged_state_dict
from ..nn.state_check import missing_unexpected, wrong_kind

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CLASS_NAME = "FourM"
# What a model repo download fetches: configs and weights (a repo may also hold pickled .bin/.pth files: never read).
_HUB_FILES = ("*.json", "*.safetensors", "*.md")

# 4M config fields that polymodal reads; the rest of a 4M config must hold the values listed in _ACCEPTED.
_OFFICIAL_REQUIRED = ("dim", "encoder_depth", "decoder_depth", "num_heads", "domains_in", "domains_out")
_ACCEPTED = {"decoder_causal_mask": (False,), "decoder_sep_mask": (True,), "num_register_tokens": (0,)}
# The keys that mark a released tokenizer's config (`polymodal.tokenizers.ml4m.folder.REFERENCE_KEYS`).
_TOKENIZER_KEYS = ("enc_type", "dec_type", "quant_type")
_IGNORED = re.compile(r"^(drop.*|.*dropout.*|.*drop_path.*|use_act_checkpoint|init_std|model_type|_.*|"
                      r"architectures|image_size|patch_size)$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit its config, or a folder that is not a checkpoint."""


# Pickled weights a folder may hold instead (older releases, other libraries): named in the error, never opened.
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _weights_path(folder: Path) -> Path:
    if folder.is_file():
        if folder.suffix != ".safetensors":  # config.json or a pickle given instead: safetensors would call it corrupt
            raise CheckpointError(f"{folder}: not a .safetensors file; give the model folder (config.json + "
                                  f"{WEIGHTS}) or its .safetensors file")
        return folder
    cands = [folder / WEIGHTS] + sorted(folder.glob("*.safetensors"))
    for c in cands:
        if c.exists():
            return c
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLES)
    held = (f"; it holds {', '.join(pickles)}, {'a pickle' if len(pickles) == 1 else 'pickles'}, which polymodal "
            "never loads (convert it to safetensors)") if pickles else ""
    raise CheckpointError(f"{folder}: no {WEIGHTS} (or other .safetensors file) in this folder{held}"
                          f"{hub.partial_snapshot_hint(folder)}")


def config_source(folder: Path, weights: Path) -> str:
    """What `read_config` read the config from, for error messages: config.json, or the weights' header."""
    cfg_path = folder / CONFIG
    return str(cfg_path) if folder.is_dir() and cfg_path.exists() else f"{weights} (header)"


def _parse_header_value(v: str) -> Any:
    try:
        return ast.literal_eval(v)  # literals only: safe on untrusted text
    except (ValueError, SyntaxError):
        return v


def read_config(folder: Path, weights: Path) -> dict[str, Any]:
    """The raw config dict: ``config.json`` if present, else the safetensors header metadata."""
    cfg_path = (folder if folder.is_dir() else folder.parent) / CONFIG
    if folder.is_dir() and cfg_path.exists():
        try:
            raw = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from e
        if not isinstance(raw, dict):
            raise CheckpointError(f"{cfg_path}: expected a JSON object of config fields, got {type(raw).__name__}")
        return raw
    try:
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise CheckpointError(_damaged(weights, e)) from e
    if not meta:
        raise CheckpointError(f"{weights}: no {CONFIG} beside it and no config in its safetensors header")
    return {k: _parse_header_value(v) for k, v in meta.items()}


# ---------------------------------------------------------------------------------------- configs


def _vocab_from_shapes(domains, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    vocab = {}
    for name in domains:
        for key in (f"encoder_embeddings.{name}.token_emb.weight", f"decoder_embeddings.{name}.to_logits.weight"):
            if key in shapes:
                v = shapes[key][0]
                if v != get_modality(name).vocab_size:
                    vocab[name] = v
                break
    return vocab


def config_from_official(raw: dict[str, Any], shapes: dict[str, tuple[int, ...]], *, source: str) -> ModelConfig:
    """Map a 4M config (``act_layer``, ``share_modality_embeddings`` absent = shared, ...) to a `ModelConfig`."""
    missing = [k for k in _OFFICIAL_REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"{source}: missing required 4M config field(s): {', '.join(missing)}")
    for key, ok in _ACCEPTED.items():
        if key in raw and raw[key] not in ok:
            raise ConfigError(f"{source}: {key}={raw[key]!r} is not supported (polymodal implements {ok[0]!r})")
    act = str(raw.get("act_layer", "GELU")).lower()
    act = {"silu": "silu", "swish": "silu", "gelu": "gelu"}.get(act)
    if act is None:
        raise ConfigError(f"{source}: act_layer {raw.get('act_layer')!r} is not supported (GELU or SiLU)")
    for key in ("domains_in", "domains_out"):  # a bare string would be read letter by letter
        if not isinstance(raw[key], (list, tuple)) or not all(isinstance(n, str) for n in raw[key]):
            raise ConfigError(f"{source}: {key}={raw[key]!r} is not a list of domain names")
    domains = list(raw["domains_in"]) + list(raw["domains_out"])
    for name in domains:
        try:
            get_modality(name)
        except KeyError as e:  # still a KeyError (what callers catch for an unknown modality), now naming the file
            raise KeyError(f"{source}: {e.args[0]}") from None

    # Worded as a released tokenizer's arguments are (`config.json_number`, `json_flag`); unlike there
    # (`reference_arg`), a null here is a bad value, not the default.
    def num(key: str, kind: type, default: Any = None) -> Any:
        return config_lib.json_number(raw.get(key, default), kind, key, source)

    def flag(key: str, default: bool) -> bool:
        return config_lib.json_flag(raw.get(key, default), key, source)

    try:
        return ModelConfig(
            domains_in=tuple(raw["domains_in"]), domains_out=tuple(raw["domains_out"]),
            dim=num("dim", int), encoder_depth=num("encoder_depth", int), decoder_depth=num("decoder_depth", int),
            num_heads=num("num_heads", int), mlp_ratio=num("mlp_ratio", float, 4.0), act=act,
            gated_mlp=flag("gated_mlp", False), qkv_bias=flag("qkv_bias", True), proj_bias=flag("proj_bias", True),
            mlp_bias=flag("mlp_bias", True), norm_bias=flag("norm_bias", True), qk_norm=flag("qk_norm", False),
            share_modality_embeddings=flag("share_modality_embeddings", True),
            vocab_sizes=_vocab_from_shapes(domains, shapes),
        )
    except ConfigError as e:  # ModelConfig's own checks (dim not divisible by num_heads, ...) name no file
        if str(e).startswith(source):
            raise
        raise ConfigError(f"{source}: {e}") from None


def is_official(raw: dict[str, Any]) -> bool:
    return "_class_name" not in raw


def is_run_config(raw: dict[str, Any]) -> bool:
    """A training run's whole config (what ``checkpoints/step_*/config.json`` holds), not a model's."""
    return isinstance(raw.get("model"), dict) and "objective" in raw


# ------------------------------------------------------------------------------------ state dicts


def adapt_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], *, strict: bool,
                     source: str) -> dict[str, torch.Tensor]:
    """Fit a file's tensors to ``model``: fill a shared modality embedding stored once, drop the all-zero
    LayerNorm biases of bias-free 4M models, keep the file's own position tables; then check names and shapes."""
    expected = model.state_dict(keep_vars=True)  # the parameters themselves: they may be on meta (no storage)
    sd = dict(sd)
    # A tensor the model shares (modality embeddings, tied sequence tables) may be stored under one name only.
    by_tensor: dict[int, list[str]] = {}
    for key, t in expected.items():
        by_tensor.setdefault(id(t), []).append(key)
    for key in expected:
        if key not in sd:
            twin = next((k for k in by_tensor[id(expected[key])] if k in sd), None)
            if twin is not None:
                sd[key] = sd[twin]
    # Our folders leave out sin-cos position tables equal to the ones the model computes (`computed_tables`).
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for key in expected:
        if key.endswith(".pos_emb") and key not in sd and key not in params:
            sd[key] = expected[key].detach()
    for key in [k for k in sd if k not in expected and k.endswith(".bias")]:
        if key[:-5] + ".weight" in expected and not bool(sd[key].float().abs().max() > 0):
            del sd[key]  # a bias-free LayerNorm stored with zeros
    # One line each (the command line prints it as is): the first tensor that differs, and how many more do.
    wrong = [k for k, t in sd.items() if k in expected and tuple(t.shape) != tuple(expected[k].shape)]
    if wrong:
        key, more = wrong[0], f" ({len(wrong) - 1} more tensors differ)" if len(wrong) > 1 else ""
        raise CheckpointError(f"{source}: tensor {key} has shape {tuple(sd[key].shape)} in the file, the config "
                              f"expects {tuple(expected[key].shape)}{more}")
    # One parameter of the model held under several names with different values: the config ties what the file
    # keeps apart (a 4M-21 file whose config lacks share_modality_embeddings: false); loading would keep one.
    for names in sorted(sorted(group) for group in by_tensor.values() if len(group) > 1):
        held = [k for k in names if k in sd]
        for other in held[1:]:
            if sd[other].shape == sd[held[0]].shape and not torch.equal(sd[other], sd[held[0]]):
                why = (" (share_modality_embeddings is absent or true in the config: set it to false for separate "
                       "encoder and decoder modality embeddings)") if other.endswith(".mod_emb") else ""
                raise CheckpointError(f"{source}: {held[0]} and {other} differ in the file, but the config makes "
                                      f"them one parameter{why}")
    # Integers where the model has a floating weight (or the reverse): a damaged or foreign file, not to be cast.
    if why := wrong_kind(sd, expected):
        raise CheckpointError(f"{source}: {why}")
    if strict:
        missing = sorted(set(expected) - set(sd))
        unexpected = sorted(set(sd) - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"{source}: state dict does not match the model: "
                                  f"{missing_unexpected(missing, unexpected, show=10)}")
    return sd


def _damaged(weights: Path, e: BaseException) -> str:
    where = f"model folder {weights.parent}: {weights.name}" if weights.parent.name else str(weights)
    return f"{where} is truncated or corrupt ({str(e).strip() or type(e).__name__})"


def read_tensors(weights: Path, dtypes: dict[str, torch.dtype] | None = None) -> dict[str, torch.Tensor]:
    """The file's tensors, each cast to ``dtypes[name]`` as it is read (`polymodal.nn.loading.read_safetensors`)."""
    try:
        return read_safetensors(weights, dtypes)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CheckpointError(_damaged(weights, e)) from e


def _shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    try:
        return safetensors_shapes(weights)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CheckpointError(_damaged(weights, e)) from e


def load_folder(path_or_id: str | Path, *, dtype: torch.dtype | None = None, strict: bool = True,
                revision: str | None = None):
    """A model from a folder, a ``.safetensors`` file or a Hub repo id (``owner/name[@revision]``, see `hub`).

    ``dtype`` (e.g. torch.bfloat16) is the dtype of the floating weights, read straight into it: the model is
    built with its parameters on the meta device and each tensor is cast as it is read, so no float32 copy of the
    model exists on the way (`polymodal.nn.loading`); default float32."""
    from .fourm import FourM

    check_dtype(dtype)
    folder = hub.resolve(path_or_id, revision=revision, allow_patterns=_HUB_FILES, what="folder or file")
    weights = _weights_path(folder)
    raw = read_config(folder, weights)
    shapes = _shapes(weights)
    lora = (raw.get("lora") or {}) if is_run_config(raw) else {}
    # Another artifact's folder given as the model (the release's folders sit side by side): said so, not as the
    # fields a model config lacks or does not know.
    if any(k in raw for k in _TOKENIZER_KEYS) and is_official(raw):
        raise CheckpointError(f"{config_source(folder, weights)}: a released 4M tokenizer's config "
                              f"({', '.join(_TOKENIZER_KEYS)}), not a 4M model's; load it with "
                              "polymodal.tokenizers.load_tokenizer")
    if raw.get("_class_name", CLASS_NAME) != CLASS_NAME and not is_run_config(raw):
        raise CheckpointError(f"{config_source(folder, weights)}: the config of a {raw['_class_name']}, not of a "
                              f"{CLASS_NAME} model (tokenizer folders load with polymodal.tokenizers.load_tokenizer)")
    if is_run_config(raw):  # a training checkpoint (checkpoints/step_*): its run's config holds the model's
        if raw["objective"] != "fourm":
            raise CheckpointError(f"{folder}: a checkpoint of a {raw['objective']!r} run, not of a 4M model")
        # Tied tables stored once there are filled by `adapt_state_dict`, as in any model folder.
        cfg = config_lib.from_dict(ModelConfig, raw["model"], source=f"{folder / CONFIG} (model)")
    elif is_official(raw):
        cfg = config_from_official(raw, shapes, source=config_source(folder, weights))
    else:
        if "_modalities" in raw:  # what save_folder recorded of the domains (the world's are not built in)
            try:
                modalities.register_specs(raw["_modalities"], str(folder), CONFIG)
            except ValueError as e:
                raise CheckpointError(str(e)) from None
        try:
            cfg = config_lib.from_dict(ModelConfig, {k: v for k, v in raw.items() if not k.startswith("_")},
                                       source=str(folder / CONFIG))
        except ConfigError as e:  # ModelConfig's own checks name the field ("model.dim: ..."), not the file
            if str(e).startswith(str(folder / CONFIG)):
                raise
            raise ConfigError(f"{folder / CONFIG}: {e}") from None
    tables = any(k.startswith("decoder_embeddings.") and k.endswith(".token_emb.weight")
                 and get_modality(k.split(".")[1]).kind is Kind.IMAGE_TOKENS for k in shapes)
    with parameters_on_meta():
        model = FourM(cfg, image_decoder_token_tables=tables)
    if lora.get("r"):  # a LoRA run's checkpoint reads as its merged model (merged in the file's dtype, then cast)
        sd = merged_state_dict(read_tensors(weights), float(lora["alpha"]) / lora["r"])
        sd = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in sd.items()}
    else:
        sd = read_tensors(weights, target_dtypes(model, dtype))
    sd = adapt_state_dict(model, sd, strict=strict, source=str(weights))
    if not strict and set(model.state_dict()) - set(sd):  # tensors the file lacks keep their initial values
        model = FourM(cfg, image_decoder_token_tables=tables)
        model.load_state_dict(sd, strict=False)
        return model.to(dtype) if dtype is not None else model
    return assign_state(model, sd, strict=strict, dtype=dtype)


def state_dict_for_file(model: torch.nn.Module, *, dedupe: bool = False) -> dict[str, torch.Tensor]:
    """Contiguous, unshared copies (safetensors refuses tensors that share memory, e.g. shared mod_emb).

    ``dedupe`` stores a shared tensor once, under its first name; `adapt_state_dict` fills the other names on load.
    """
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if dedupe and v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out


def computed_tables(model: torch.nn.Module) -> set[str]:
    """Names of sin-cos position buffers equal to what the model's config computes: files need not hold them."""
    from .embeddings import _Base, _pos_table

    out = set()
    for name, m in model.named_modules():
        if isinstance(m, _Base) and m.modality.pos != "learned":
            if torch.equal(m.pos_emb.detach().cpu(), _pos_table(m.modality, m.dim)):
                out.add(f"{name}.pos_emb")
    return out


def save_folder(model, path: str | Path) -> Path:
    """Write polymodal's folder: config.json (our fields) + model.safetensors + a README for humans."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = model.config
    # The definitions of the domains: a model trained on modalities its data registered (the world's tok_*@64)
    # loads in a new process, where nothing has registered them yet.
    # (the registry's definitions: the config's own changes, such as a smaller vocabulary, are in its fields)
    specs = {n: modalities.to_spec(modalities.get(n)) for n in dict.fromkeys((*c.domains_in, *c.domains_out))}
    cfg = {"_class_name": CLASS_NAME, **config_lib.to_dict(c), "_modalities": specs}
    tmp = path / (WEIGHTS + ".tmp")
    # Tied tables are stored once (shared modality embeddings stay twice, as in official files); sin-cos tables
    # that the config computes exactly are left out (2 MB of a 16 MB small model in float16).
    tied = model.config.tie_sequence_tables
    sd = state_dict_for_file(model, dedupe=tied)
    for key in computed_tables(model):
        sd.pop(key, None)
    save_file(sd, str(tmp), metadata={"format": "pt"})
    tmp.replace(path / WEIGHTS)  # atomic: a reader never sees half a file
    (path / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    (path / "README.md").write_text(
        f"# polymodal FourM\n\n{model.num_params() / 1e6:.2f}M parameters, dim {c.dim}, "
        f"{c.encoder_depth}+{c.decoder_depth} layers.\n\n- inputs: {', '.join(c.domains_in)}\n"
        f"- outputs: {', '.join(c.domains_out)}\n\nLoad with `polymodal.model.FourM.from_pretrained(path)`.\n")
    return path
