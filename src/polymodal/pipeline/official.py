"""The released 4M-7 / 4M-21 models as pipelines: each token domain's tokenizer found, checked and loaded on use.

A released model folder (``EPFL-VILAB/4M-21_XL``: config.json with 4M's own fields, no ``_class_name``, and
model.safetensors) holds no tokenizer. `Pipeline.from_pretrained` reads it through `ReleaseTokenizers`, a mapping
that knows, for every tokenized domain of the model, where its tokenizer is: a folder the user gave for it
(``tokenizers={"tok_depth@224": FOLDER}``, ``--tokenizer tok_depth@224=FOLDER``), else the release's repo
(`hub.RELEASED_TOKENIZERS`: tok_rgb@224 -> ``EPFL-VILAB/4M_tokenizers_rgb_16k_224-448``, ...), resolved through
the Hub cache. A tokenizer loads the first time an input or an output needs it, so RGB -> depth reads two
tokenizers, not twelve; and it is checked against the domain it serves before it is used:

=====================================  ===========================================================================
domain (4M-21)                         tokenizer it takes
=====================================  ===========================================================================
tok_rgb / depth / normal, tok_*_edge   a DiVAE (diffusion decoder) of 3 / 1 / 3 / 1 channels
tok_semseg                             a ViT VQ-VAE of class ids (134 COCO panoptic labels)
tok_clip, tok_dinov2, tok_imagebind    a ViT VQ-VAE of feature maps
tok_dinov2_global, ..._global          a Bottleneck-MLP VQ-VAE of vectors
sam_instance                           the mask VQ-VAE of 16 codes of 1024 (4 x 4 tokens of a 64 px mask)
human_poses                            the pose VQ-VAE of 8 codes of 1024 -> 207 values (23 rotation matrices)
=====================================  ===========================================================================

and its codebook must be the model's vocabulary for the domain, its token grid the domain's. A misfit is one
`PipelineError` line naming the domain, the folder and what differs. The text tokenizer (caption, det, metadata,
...) is 4M's WordPiece file `hub.TEXT_TOKENIZER_FILE`, which the model repos do not hold: pass it, or a sequence
input or output is refused with a line naming the file.

Low-memory mode (``ReleaseTokenizers(low_memory=True)``, ``Pipeline.from_pretrained(low_memory=True)``,
``polymodal generate --low-memory``): a generation holds at most one tokenizer folder at a time, beside the text
tokenizer. `require` checks each folder's fit from its config and its safetensors header alone (the tokenizer
built on the meta device: every check of a load, no weight read, ~0.2 s a folder: 2.1 s for 4M-21 B's twelve), and
`release` drops a tokenizer after its last use in a call (the pipeline releases each input's after encoding it,
each output's after decoding it). 4M-21 B's twelve folders are 9.0 GiB in float32 (benchmarks/memory_inference.py).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import dataclasses
import gc
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .. import hub
from ..config import ModelConfig
from ..generation import Plan
from ..modalities import Kind, Modality
from ..tokenizers import load_tokenizer
from ..tokenizers.ml4m.divae import CHANNELS, DiVAE
from ..tokenizers.ml4m.folder import load_official_tokenizer, reference_arg
from ..tokenizers.ml4m.vqvae import OfficialVQVAE
from ..tokenizers.serializers.instances import MASK_VOCAB, NUM_MASK_CODES
from ..tokenizers.serializers.poses import NUM_POSE_CODES, POSE_VOCAB
from ..viz.decode import TEXT, base_name
from .inputs import PipelineError

# base domain name -> (family, values): what a released tokenizer of that domain is.
FAMILIES: dict[str, tuple[str, str]] = {
    "rgb": ("DiVAE", "rgb"), "depth": ("DiVAE", "depth"), "normal": ("DiVAE", "normal"),
    "canny_edge": ("DiVAE", "edge"), "sam_edge": ("DiVAE", "edge"),
    "semseg": ("VQ-VAE", "semseg"), "clip": ("VQ-VAE", "feature"), "dinov2": ("VQ-VAE", "feature"),
    "imagebind": ("VQ-VAE", "feature"), "dinov2_global": ("VQ-VAE", "vector"),
    "imagebind_global": ("VQ-VAE", "vector"), "sam_instance": ("VQ-VAE", "mask"), "human_poses": ("VQ-VAE", "vector"),
}
# Sequence domains whose text holds codes of a tokenizer: (codes per item, codebook size).
CODE_DOMAINS = {"sam_instance": (NUM_MASK_CODES, MASK_VOCAB), "human_poses": (NUM_POSE_CODES, POSE_VOCAB)}
SMPL_BODY_POSE = 23 * 3 * 3  # what the pose tokenizer decodes: 23 joint rotation matrices
_HUB_FILES = ("*.json", "*.safetensors")
MISSING_TEXT = (f"{{name}}: 4M's text tokenizer is needed ({hub.TEXT_TOKENIZER_FILE}, in apple/ml-4m under "
                "fourm/utils/tokenizer/trained/); pass it with --text-tokenizer PATH (text_tokenizer= in Python)")


def is_official_model(folder: Path) -> bool:
    """Whether ``folder`` holds a released 4M model: a config.json with 4M's fields and no ``_class_name``."""
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "_class_name" not in raw and {"dim", "domains_in", "domains_out"} <= set(raw)


SAM_MASK_SIZE = 64  # the released SAM-instance tokenizer: a 64 px mask in its box, 4 x 4 tokens


def domain_size(domain: str) -> int | None:
    """The pixels a domain's tokens cover (``tok_clip@224`` -> 224; ``sam_instance``: its 64 px masks), None for
    globals and the other sequences."""
    if domain == "sam_instance":
        return SAM_MASK_SIZE
    return int(domain.rsplit("@", 1)[1]) if "@" in domain else None


class ReleaseTokenizers(Mapping):
    """domain -> tokenizer of a released model, each loaded and checked (`load_domain_tokenizer`) when first
    looked up; ``"text"`` -> the text tokenizer when one was given. ``in`` and iteration load nothing.

    ``overrides``: domain -> folder or repo id replacing the release's; ``given``: domain -> a tokenizer object
    already in memory (checked by `check_fit` here). ``low_memory``: `require` checks without loading and
    `release` frees (see the module docstring); otherwise a tokenizer once loaded is kept."""

    def __init__(self, cfg: ModelConfig, *, overrides: Mapping[str, str | Path] | None = None, text: Any = None,
                 given: Mapping[str, Any] | None = None, diffusion_dtype: torch.dtype | None = None,
                 low_memory: bool = False):
        self.cfg, self.diffusion_dtype, self.low_memory = cfg, diffusion_dtype, low_memory
        domains = list(dict.fromkeys((*cfg.domains_in, *cfg.domains_out)))
        served = [d for d in domains if base_name(d) in FAMILIES
                  and (cfg.modality(d).kind is Kind.IMAGE_TOKENS or d in CODE_DOMAINS)]
        self.sources: dict[str, str | Path] = {d: hub.RELEASED_TOKENIZERS[d] for d in served
                                               if d in hub.RELEASED_TOKENIZERS}
        for domain, folder in (overrides or {}).items():
            if domain not in served:
                raise PipelineError(f"--tokenizer {domain}={folder}: {domain} is not a tokenized domain of this "
                                    f"model (its tokenized domains: {', '.join(served) or 'none'})")
            self.sources[domain] = folder
        self._loaded: dict[str, Any] = {} if text is None else {TEXT: text}
        self._folders: dict[Path, Any] = {}  # each folder read once, whatever the domains it serves
        self._resolved: dict[str, Path] = {}  # domain -> its source's local folder (a Hub id asked once)
        self._checked: set[str] = set()  # domains whose folder `require` found fitting (low-memory mode)
        self._given = set(given or ())  # the caller's objects: never released here
        for domain, tok in (given or {}).items():
            if domain not in served:
                raise PipelineError(f"{domain} is not a tokenized domain of this model (its tokenized domains: "
                                    f"{', '.join(served) or 'none'})")
            check_fit(domain, tok, cfg.modality(domain))
            self._loaded[domain] = tok

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        if name not in self.sources:
            raise KeyError(name)
        tok = load_domain_tokenizer(name, self.sources[name], self.cfg.modality(name), loaded=self._folders,
                                    diffusion_dtype=self.diffusion_dtype, folder=self._folder(name))
        self._loaded[name] = tok
        return tok

    def _folder(self, name: str) -> Path:
        if name not in self._resolved:
            self._resolved[name] = hub.resolve(self.sources[name], allow_patterns=_HUB_FILES, what="tokenizer folder")
        return self._resolved[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self.sources

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys((*self._loaded, *self.sources)))

    def __len__(self) -> int:
        return len(dict.fromkeys((*self._loaded, *self.sources)))

    @property
    def loaded(self) -> tuple[str, ...]:
        """Names whose tokenizer is loaded by now (the text tokenizer, if given, from the start)."""
        return tuple(self._loaded)

    def require(self, names: Iterable[str]) -> None:
        """Load (and check) every tokenizer that inputs or outputs ``names`` need, before anything runs: a
        missing text tokenizer or a misfit is refused here, not after minutes of generation. In low-memory mode
        each is checked on the meta device instead (its config and its weights' header; nothing kept)."""
        names = list(names)
        for name in names:  # the text tokenizer first: it is a file to pass, the others come from the Hub
            if self.cfg.modality(name).kind is Kind.SEQUENCE and TEXT not in self._loaded:
                raise PipelineError(MISSING_TEXT.format(name=name))
        for name in names:
            if name not in self.sources:
                continue
            if not self.low_memory:
                self[name]
            elif name not in self._loaded and name not in self._checked:
                load_domain_tokenizer(name, self.sources[name], self.cfg.modality(name), folder=self._folder(name),
                                      device="meta")  # built, checked and dropped: no weight read
                self._checked.add(name)

    def release(self, names: Iterable[str], *, later: Iterable[str] = ()) -> None:
        """In low-memory mode, drop the loaded tokenizers of ``names`` and give their memory back (a folder that a
        domain in ``later`` also reads is kept until then: 4M-21's one edge DiVAE); the text tokenizer and
        tokenizers given as objects stay. Does nothing otherwise: a tokenizer once loaded is kept."""
        later = set(later)
        drop = [n for n in names if self.low_memory and n in self._loaded and n in self.sources
                and n not in self._given and n not in later]
        for name in drop:
            del self._loaded[name]
        kept = [n for n in (*self._loaded, *later) if n in self.sources]
        for name in drop:
            folder = self._resolved.get(name)
            if not any(self.sources[n] == self.sources[name] or self._resolved.get(n) == folder for n in kept):
                self._folders.pop(folder, None)
        if drop:
            free_memory()


def _trim_function() -> Any:
    """glibc's ``malloc_trim``, or None on another C library."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _trim_function()


def free_memory() -> None:
    """Give freed weights back to the system: drop autocast's casts (a call under ``torch.autocast`` keeps a
    bf16 copy of each float32 weight it used until the region ends: 0.53 GiB of a released B-size CLIP VQ-VAE),
    collect cycles (modules hold some), then ask glibc to return its free heap pages (without it a released
    B-size tokenizer's 0.46-1.07 GiB stayed resident: tensors under glibc's mmap threshold; the trim takes
    1-75 ms). Measured in benchmarks/memory_inference.py's docstring."""
    torch.clear_autocast_cache()
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _reference_args(folder: Path) -> dict | None:
    """The reference's constructor arguments of a released tokenizer folder (config.json, else the weights'
    header), or None when the folder is not one (a polymodal tokenizer, or nothing)."""
    try:
        if (folder / "config.json").is_file():
            args = json.loads((folder / "config.json").read_text())
        else:
            with safe_open(str(folder / "model.safetensors"), "pt") as f:
                args = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (OSError, ValueError):
        return None
    if not isinstance(args, dict) or "_class_name" in args or not {"enc_type", "dec_type"} <= set(args):
        return None
    return args


def _a(words: str) -> str:
    return ("an " if words[0] in "aeio" or words.startswith("rgb") else "a ") + words


def _what(tok: Any) -> str:
    if isinstance(tok, DiVAE):
        return _a(f"{tok.cfg.values} DiVAE ({tok.cfg.channels} channels)")
    if isinstance(tok, OfficialVQVAE):
        return _a(f"{tok.cfg.values} VQ-VAE")
    return _a(type(tok).__name__)


def load_domain_tokenizer(domain: str, source: str | Path, mod: Modality, *,
                          loaded: dict[Path, Any] | None = None, diffusion_dtype: torch.dtype | None = None,
                          folder: Path | None = None, device: str = "cpu") -> Any:
    """The tokenizer of ``source`` (a folder or a Hub repo id) for ``domain``, checked by `check_fit`; a
    `PipelineError` naming the domain and the folder when it does not fit, a `hub.HubError` when it is not there.

    ``loaded``: folder -> tokenizer read so far; a folder serving a second domain (4M-21's one edge DiVAE for
    canny and SAM edges) is not read again: the domain gets a copy sharing its weights, named for the domain.
    ``diffusion_dtype``: a DiVAE's UNet in that dtype (torch.bfloat16: ~1.7x faster decodes on CPUs with AVX-512
    BF16, at +0.0001-0.0002 abs-rel on a trained depth decoder: benchmarks/divae_quality.py). ``folder``: the
    local folder of ``source`` when already resolved. ``device="meta"``: a released folder's tokenizer built on
    the meta device from its config and its weights' header (every check of a load, no weight read)."""
    folder = folder or hub.resolve(source, allow_patterns=_HUB_FILES, what="tokenizer folder")
    family, values = FAMILIES[base_name(domain)]
    if loaded is not None and folder in loaded and loaded[folder].cfg.values == values:
        tok = for_domain(loaded[folder], domain)
        check_fit(domain, tok, mod, source)
        return tok
    args = _reference_args(folder)
    try:
        if args is None:
            tok = load_tokenizer(folder)  # a polymodal tokenizer folder; its misfit is found below
        else:
            divae = str(args["dec_type"]).startswith(("unet", "uvit"))
            # read as the loader reads it: a mistyped value is the loader's one line naming config.json
            channels = reference_arg(args, "n_channels", int, None, Path(folder) / "config.json")
            if divae and family != "DiVAE":
                raise PipelineError(f"{domain}: tokenizer {source} is a DiVAE (a diffusion decoder of images), "
                                    f"{domain} takes {_a(values)} {family}")
            if divae and channels is not None and channels != CHANNELS[values]:
                raise PipelineError(f"{domain}: tokenizer {source} reads {channels}-channel images, {domain} takes "
                                    f"{_a(values)} DiVAE of {CHANNELS[values]} channels")
            tok = load_official_tokenizer(folder, name=domain, image_size=domain_size(domain), map_location=device,
                                          decoder_dtype=diffusion_dtype)  # a VQ-VAE ignores it
    except (KeyError, TypeError) as e:  # a folder whose arguments miss or mistype what its family needs
        raise PipelineError(f"{domain}: tokenizer {source} cannot be read ({e})") from None
    check_fit(domain, tok, mod, source)
    if loaded is not None and device != "meta":
        loaded[folder] = tok
    return tok


def for_domain(tok: Any, domain: str) -> Any:
    """``tok`` under the name of another domain: a shallow copy whose modules and weights are ``tok``'s own."""
    if not dataclasses.is_dataclass(getattr(tok, "cfg", None)) or not hasattr(tok.cfg, "name"):
        return tok
    twin = copy.copy(tok)
    twin.cfg = dataclasses.replace(tok.cfg, name=domain)
    return twin


def check_fit(domain: str, tok: Any, mod: Modality, source: str | Path = "") -> None:
    """Refuse a tokenizer that cannot serve ``domain`` (see the module table): family, values, codebook size,
    token count; one line naming what differs."""
    family, values = FAMILIES[base_name(domain)]
    where = f"{domain}: tokenizer {source}" if source else f"{domain}: the tokenizer"
    fits = isinstance(tok, DiVAE) if family == "DiVAE" else isinstance(tok, OfficialVQVAE)
    if not fits or tok.cfg.values != values:
        raise PipelineError(f"{where} is {_what(tok)}, {domain} takes {_a(values)} {family}")
    tokens, vocab = CODE_DOMAINS.get(domain, (mod.num_tokens, mod.vocab_size))
    if tok.vocab_size != vocab:
        raise PipelineError(f"{where} has a codebook of {tok.vocab_size} codes, this model's {domain} has "
                            f"{vocab}")
    if isinstance(tok, DiVAE):
        grid, size = mod.grid[0], domain_size(domain) or 224
        if tok.cfg.patch_size * grid != size:
            raise PipelineError(f"{where} makes one token per {tok.cfg.patch_size} px; {domain} has {grid}x{grid} "
                                f"tokens of {size // grid} px")
    elif tok.num_tokens != tokens:
        raise PipelineError(f"{where} gives {tok.num_tokens} tokens per item, {domain} has {tokens}")
    if domain == "human_poses" and tok.cfg.out_channels != SMPL_BODY_POSE:
        raise PipelineError(f"{where} decodes {tok.cfg.out_channels} values; 4M-21's pose tokenizer decodes "
                            f"{SMPL_BODY_POSE} (23 joint rotation matrices)")


def text_tokenizer_of(folder: Path, given: str | Path | None) -> Any:
    """The text tokenizer: ``given`` (a file, folder or repo id), else 4M's file when the model folder holds it,
    else None (a sequence input or output is then refused with `MISSING_TEXT`)."""
    if given is not None:
        return load_tokenizer(given)
    if (folder / hub.TEXT_TOKENIZER_FILE).is_file():
        return load_tokenizer(folder / hub.TEXT_TOKENIZER_FILE)
    return None


def split_overrides(tokenizers: Mapping[str, str | Path] | Iterable[str | Path]) -> dict[str, str | Path]:
    """``{domain: folder}`` from a mapping, or from ``DOMAIN=FOLDER`` items (what ``--tokenizer`` takes); an item
    without a domain is refused for a released model (which domain it serves would be a guess)."""
    if isinstance(tokenizers, Mapping):
        return dict(tokenizers)
    out: dict[str, str | Path] = {}
    for item in tokenizers:
        domain, sep, folder = str(item).partition("=")
        if not sep or not domain or not folder:
            raise PipelineError(f"--tokenizer {item}: for a released 4M model give DOMAIN=FOLDER (e.g. "
                                "tok_depth@224=path/to/folder), which domain a folder serves is not guessed")
        out[domain] = folder
    return out


DEMO_TOP_P = 0.8  # Demo4MSampler.forward's default nucleus for every step of its chains


def demo_settings(plan: Plan) -> Plan:
    """A preset chain with the demo sampler's top-p on every step that has none of its own."""
    return dataclasses.replace(plan, steps=tuple(s if s.top_p else dataclasses.replace(s, top_p=DEMO_TOP_P)
                                                 for s in plan.steps))
