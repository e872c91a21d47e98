"""The bundle folder on disk: read (`read_bundle`: ``pipeline.json`` checked, the modalities it defines registered,
model and tokenizers loaded; a plain FourM folder too), written (`write_bundle`, what `Pipeline.save` does), its
large tensors halved to float16.

Bundle layout::

    DIR/pipeline.json         format, model folder, tokenizer folder per modality, text tokenizer, the definition of
                              every modality the model uses (registered on load), pixel normalization, plans
    DIR/model/                FourM folder (config.json + model.safetensors)
    DIR/tokenizers/<name>/    one tokenizer folder per tokenized modality ("@" -> "_"), and tokenizers/text/
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import modalities
from ..data.pretokenize import modality_spec
from ..generation import Plan
from ..model.fourm import FourM
from ..tokenizers import load_tokenizer
from ..tokenizers.text import TextTokenizer
from ..viz.decode import TEXT
from .inputs import PipelineError
from .official import ReleaseTokenizers
from .outputs import safe_name
from .plans import plan_from_dict, plan_to_dict

if TYPE_CHECKING:
    from .bundle import Pipeline

FORMAT, VERSION, BUNDLE_FILE = "polymodal-pipeline", 1, "pipeline.json"
# Tensors smaller than this stay float32: norms, biases, statistics (a tokenizer's standardization) are tiny and
# the most sensitive to rounding.
HALF_MIN_NUMEL = 4096


def read_bundle_file(file: Path) -> dict:
    """``pipeline.json``, checked for the fields `Pipeline.from_pretrained` reads (a PipelineError naming the file
    and the field otherwise)."""
    try:
        info = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise PipelineError(f"{file}: not a polymodal pipeline file (no \"format\": \"{FORMAT}\")")
    for key, kind in (("modalities", dict), ("tokenizers", dict), ("plans", dict), ("pixels", dict), ("model", str)):
        if key in info and not isinstance(info[key], kind):
            raise PipelineError(f"{file}: {key} must be a JSON {'object' if kind is dict else 'string'}, got "
                                f"{type(info[key]).__name__}")
    if not all(isinstance(v, str) for v in info.get("tokenizers", {}).values()):
        raise PipelineError(f"{file}: tokenizers must map modality names to folder paths (strings)")
    return info


def register_specs(specs: Mapping[str, dict], source: str) -> None:
    """Register the modality definitions a bundle records; a different definition already registered is refused."""
    try:
        modalities.register_specs(specs, source, BUNDLE_FILE)
    except ValueError as e:
        raise PipelineError(str(e)) from None


def read_bundle(path: Path, *, text_tokenizer: str | Path | None = None,
                tokenizers: Iterable[str | Path] | Mapping[str, str | Path] = (), device: str | torch.device = "cpu",
                adapters: str | Path | None = None, dtype: torch.dtype | None = None) -> tuple[
                    FourM, dict[str, Any], dict | None, dict[str, Plan]]:
    """(model, tokenizers, pixels, plans) of a bundle folder, or of a plain FourM folder with ``text_tokenizer`` and
    extra tokenizer folders (what `Pipeline.from_pretrained` takes; see it for the arguments)."""
    toks: dict[str, Any] = {}
    info: dict = {}
    model_dir = path
    if (path / BUNDLE_FILE).is_file():
        info = read_bundle_file(path / BUNDLE_FILE)
        register_specs(info.get("modalities", {}), str(path))
        model_dir = path / info.get("model", "model")
        for name, rel in info.get("tokenizers", {}).items():
            toks[name] = load_tokenizer(path / rel)  # a damaged folder: a TokenizerLoadError naming its file
    for p in ([text_tokenizer] if text_tokenizer else []) + list(tokenizers.values() if isinstance(
            tokenizers, Mapping) else tokenizers):
        tok = load_tokenizer(p)
        if not isinstance(tok, TextTokenizer):
            modalities.register(tok.modality, overwrite=False) if not modalities.is_registered(
                tok.cfg.name) else None
        toks[_tokenizer_name(tok)] = tok
    try:
        model = FourM.from_pretrained(model_dir, dtype=dtype).to(device)
    except (KeyError, ValueError) as e:  # a token modality nobody registered: its tokenizer defines it
        text = str(e.args[0]) if e.args else str(e)
        if "unknown modality" not in text:
            raise
        raise PipelineError(f"{model_dir}: {text}; a model over tokenizer modalities loads with their tokenizer "
                            "folders (tokenizers=..., --tokenizer DIR ...) or from a bundle") from None
    if adapters:
        model = model.load_adapters(adapters, merge=True)
    try:
        plans = {k: plan_from_dict(v, k) for k, v in info.get("plans", {}).items()}
    except PipelineError as e:  # the bundle's file, not the user's settings
        raise PipelineError(f"{path / BUNDLE_FILE}: {e}") from None
    return model, toks, info.get("pixels"), plans


def _tokenizer_name(tok: Any) -> str:
    if isinstance(tok, TextTokenizer):
        return TEXT
    return tok.cfg.name  # ViTVQVAE, MLPTokenizer: the token modality they produce


def write_bundle(pipe: Pipeline, path: Path, *, half: bool = False) -> Path:
    """Write ``pipe`` as a bundle in ``path`` (the layout above); ``half``: large tensors in float16
    (`halve_safetensors`). A released model's tokenizers stay in their repos; its text tokenizer goes in."""
    path.mkdir(parents=True, exist_ok=True)
    pipe.model.save_pretrained(path / "model")
    rels = {}
    toks = pipe.tokenizers
    if isinstance(toks, ReleaseTokenizers):
        toks = {TEXT: toks[TEXT]} if TEXT in toks else {}
    for name, tok in toks.items():
        rel = f"tokenizers/{safe_name(name)}"
        tok.save_pretrained(path / rel)
        rels[name] = rel
    if half:
        for file in sorted(path.rglob("*.safetensors")):
            halve_safetensors(file)
    cfg = pipe.model.config
    names = dict.fromkeys((*cfg.domains_in, *cfg.domains_out))
    info = {"format": FORMAT, "version": VERSION, "model": "model", "tokenizers": rels,
            "text_tokenizer": rels.get(TEXT), "modalities": {n: modality_spec(modalities.get(n)) for n in names},
            "pixels": pipe.pixels, "plans": {k: plan_to_dict(p) for k, p in pipe.plans.items()}}
    (path / BUNDLE_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return path


def halve_safetensors(file: Path) -> None:
    """Rewrite a safetensors file with its large float32 tensors in float16 (atomically; metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(file), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, t in tensors.items():
        if t.dtype == torch.float32 and t.numel() >= HALF_MIN_NUMEL:
            if bool(t.abs().max() > torch.finfo(torch.float16).max):
                raise ValueError(f"{file}: tensor {k} exceeds the float16 range; save the bundle without half")
            tensors[k] = t.half()
    tmp = file.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(file)
