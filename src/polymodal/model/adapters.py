"""LoRA adapter folders: saved apart from the model they adapt, loaded back onto that model only.

A folder (a LoRA run writes one to ``release/adapters/``)::

    adapters.safetensors   every tensor the run trained: the adapters (``<layer>.lora_A`` (r, in), ``.lora_B``
                           (out, r)) and the parameters trained beside them (``lora.train``: new modality
                           embeddings and heads)
    adapter_config.json    format, r, alpha, dropout, targets, the names of the non-adapter tensors (``extra``),
                           the trained model's config (``model``), and the base: ``base_fingerprint`` and ``base``
                           (where the starting weights came from, as the run named them)

The base fingerprint (`fingerprint`) is a SHA-256 over the base weights the adapters were trained on: every
parameter of the trained model that did not train (all but the adapters and the ``extra`` tensors, which the folder
carries; a tied parameter under each of its names; buffers, such as sin-cos position tables, are not weights), in
sorted name order; per tensor ``name``, a NUL, its shape as Python writes a tuple, a NUL, then the SHA-256 of its
values' bytes (floating tensors as float32, little-endian, row-major; others as stored). Float32 values make it
independent of the dtype a base was stored or loaded in where the values are the same (a float16 file loaded as
float32). Loading onto any other weights is refused, naming both fingerprints and the base the adapters were
trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import config as config_lib
from .. import hub
from ..config import ConfigError, LoRAConfig, ModelConfig
from ..nn.lora import LoRALinear, add_lora, lora_names, merge_lora

FORMAT, VERSION = "polymodal-lora", 1
ADAPTERS, ADAPTER_CONFIG = "adapters.safetensors", "adapter_config.json"


class AdapterError(ValueError):
    """An adapter folder that cannot be loaded onto this model: another base, a damaged file, a wrong format."""


def _is_lora(name: str) -> bool:
    return name.endswith(".lora_A") or name.endswith(".lora_B")


def fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of named tensors: names, shapes and values (see the module docstring for the exact bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu")
        if t.is_floating_point():
            t = t.float()
        data = t.contiguous().numpy().tobytes()
        h.update(f"{name}\0{tuple(t.shape)}\0".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _short(fp: str) -> str:
    return f"sha256:{fp[:16]}"


def save_adapters(state: Mapping[str, torch.Tensor], folder: str | Path, *, lora: LoRAConfig, trained: Iterable[str],
                  frozen: Iterable[str], model_config: Any, objective: str = "fourm", base: str = "") -> Path:
    """Write an adapter folder from a wrapped model's full state dict ``state`` (CPU tensors), the names of the
    parameters that trained (``trained``: adapters and extras) and of those that did not (``frozen``: the base,
    fingerprinted here). ``base`` says where the starting weights came from. Files appear whole (written, then
    renamed), the config last."""
    folder = Path(folder)
    trained, frozen = list(trained), list(frozen)
    missing = [k for k in trained + frozen if k not in state]
    if missing:
        raise KeyError(f"parameter {missing[0]} is not in the state dict")
    extra = [k for k in trained if not _is_lora(k)]
    tensors = {k: state[k].detach().to("cpu").contiguous().clone() for k in trained}
    info = {"format": FORMAT, "version": VERSION, "r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout,
            "targets": list(lora.targets), "adapters": sum(_is_lora(k) for k in trained), "extra": extra,
            "base_fingerprint": fingerprint({k: state[k] for k in frozen}), "base": base, "objective": objective,
            "model": config_lib.to_dict(model_config)}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ADAPTERS}.tmp-{os.getpid()}"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / ADAPTERS)
    tmp = folder / f".{ADAPTER_CONFIG}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, folder / ADAPTER_CONFIG)
    return folder


def save_model_adapters(model: torch.nn.Module, folder: str | Path, *, lora: LoRAConfig, base: str = "") -> Path:
    """`save_adapters` of a wrapped model in memory: its trainable parameters are what it carries."""
    params = list(model.named_parameters(remove_duplicate=False))
    return save_adapters(model.state_dict(), folder, lora=lora, trained=[n for n, p in params if p.requires_grad],
                         frozen=[n for n, p in params if not p.requires_grad], model_config=model.config, base=base)


def read_adapters(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config.json as a dict, the tensors) of an adapter folder, or an AdapterError naming the file."""
    folder = hub.resolve(folder, allow_patterns=("*.json", "*.safetensors", "*.md"), what="adapter folder")
    cfg_file, weights = folder / ADAPTER_CONFIG, folder / ADAPTERS
    if not cfg_file.is_file():
        raise AdapterError(f"{folder}: no {ADAPTER_CONFIG}; not a LoRA adapter folder (a LoRA run writes one to "
                           "its release/adapters)")
    try:
        info = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise AdapterError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise AdapterError(f"{cfg_file}: format is {info.get('format') if isinstance(info, dict) else None!r}, "
                           f"expected {FORMAT!r}")
    if info.get("version") != VERSION:
        raise AdapterError(f"{cfg_file}: version {info.get('version')!r}; this polymodal reads version {VERSION}")
    try:
        with safe_open(str(weights), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a missing or damaged file
        raise AdapterError(f"{weights}: missing, truncated or corrupt ({str(e).strip() or type(e).__name__})") from e
    return info, tensors


def load_adapters(model, folder: str | Path, *, merge: bool = False):
    """``model`` (a `FourM`: the base) with the adapters of ``folder``; refused (`AdapterError`, one line) if the
    model is not the base they were trained on. Returns the adapted model: ``model`` itself, wrapped in place, or,
    when the adapters add modalities, a new FourM of the trained config holding ``model``'s base weights. ``merge``:
    folded into plain linear layers (`nn.lora.merge_lora`), for inference."""
    from .fourm import FourM

    info, tensors = read_adapters(folder)
    if info.get("objective", "fourm") != "fourm":
        raise AdapterError(f"{folder}: adapters of a {info['objective']!r} model, not of a 4M model")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise AdapterError(f"{folder}: this model already has LoRA adapters; load adapters onto the base model")
    try:
        trained_cfg = config_lib.from_dict(ModelConfig, info["model"], source=f"{folder} {ADAPTER_CONFIG} (model)")
        lora = LoRAConfig(r=info["r"], alpha=info["alpha"], dropout=info["dropout"], targets=info["targets"])
    except (ConfigError, KeyError) as e:
        raise AdapterError(f"{folder}: {ADAPTER_CONFIG}: {e}") from None
    extra = set(info.get("extra", []))
    base_sd = model.state_dict()
    target = model if model.config == trained_cfg else FourM(trained_cfg).to(
        device=model.mask_token.device, dtype=model.mask_token.dtype)
    target_sd = target.state_dict()
    usable = {k: v for k, v in base_sd.items() if k in target_sd and k not in extra and v.shape == target_sd[k].shape}
    names = [n for n, _ in target.named_parameters(remove_duplicate=False) if n not in extra]
    now = fingerprint({k: usable[k] for k in names if k in usable})
    if now != info["base_fingerprint"]:
        lacking = [k for k in names if k not in usable]
        why = (f" ({len(lacking)} of the base's {len(names)} weights are missing or of another shape here, e.g. "
               f"{lacking[0]})" if lacking else "")
        # This model named by its own weights (every parameter): what another folder's base_fingerprint shows.
        own = fingerprint(dict(model.named_parameters(remove_duplicate=False)))
        raise AdapterError(f"{folder}: adapters trained on base {_short(info['base_fingerprint'])} "
                           f"({info.get('base') or 'path not recorded'}); this model is {_short(own)}{why}: load "
                           "them onto the model they were trained on")
    if target is not model:  # the base's weights and buffers; the new modalities' come from the folder below
        target.load_state_dict(usable, strict=False)
    add_lora(target, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, targets=lora.targets)
    expected = set(lora_names(target)) | extra
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)
        raise AdapterError(f"{folder}: {ADAPTERS} does not match its config: {len(odd)} tensors differ, e.g. "
                           f"{odd[0]} ({'in the file only' if odd[0] in tensors else 'missing from the file'})")
    state = target.state_dict()
    wrong = [k for k, t in tensors.items() if tuple(t.shape) != tuple(state[k].shape)]
    if wrong:
        raise AdapterError(f"{folder}: tensor {wrong[0]} has shape {tuple(tensors[wrong[0]].shape)} in the file, "
                           f"the model expects {tuple(state[wrong[0]].shape)}")
    target.load_state_dict(tensors, strict=False)
    return merge_lora(target) if merge else target
