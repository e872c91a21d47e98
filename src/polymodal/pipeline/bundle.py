"""`Pipeline`: a FourM model with the tokenizers of its modalities, saved and loaded as one folder (a bundle:
its layout, reading and writing in `pipeline.bundle_files`).

`Pipeline.from_pretrained` also takes a plain FourM folder or an official 4M checkpoint (no image tokenizers:
their image tokens are generated as ids; text through ``text_tokenizer``, e.g. 4M's WordPiece JSON).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import hub
from ..generation import Plan, generate
from ..modalities import Kind
from ..model.features import EncoderFeatures
from ..model.fourm import FourM
from ..tokenizers.text_layout import NUM_SENTINELS, SENTINEL_BASE
from ..tokenizers.vqvae import ViTVQVAE
from ..viz.decode import TEXT, base_name, decode_outputs, value_kind
from .bundle_files import (  # noqa: F401 - public names of pipeline.bundle, kept for their importers
    BUNDLE_FILE,
    FORMAT,
    HALF_MIN_NUMEL,
    VERSION,
    halve_safetensors,
    read_bundle,
    read_bundle_file,
    register_specs,
    write_bundle,
)
from .inputs import IMAGENET_MEAN, IMAGENET_STD, PipelineError, closest, to_condition
from .official import ReleaseTokenizers, demo_settings, is_official_model, split_overrides, text_tokenizer_of
from .official_values import check_decode_settings, decode_release
from .outputs import Outputs, check_not_a_source, remember_sources
from .plans import preset_plan, targets_plan
from .settings import check, check_device

# What a download of a bundle or model repo fetches: pipeline.json, configs, weights, tokenizer JSON, cards.
_HUB_FILES = ("*.json", "*.safetensors", "*.md")


class ResizeNotice(UserWarning):
    """An input image was resized to the model's size (the library's default notice)."""


def _warn(message: str) -> None:
    warnings.warn(message, ResizeNotice, stacklevel=4)


def _has_sentinel(cond: Any) -> bool:
    ids = cond if isinstance(cond, torch.Tensor) else None
    return ids is not None and ids.ndim == 2 and not ids.dtype.is_floating_point and bool(
        ((ids >= SENTINEL_BASE) & (ids < SENTINEL_BASE + NUM_SENTINELS)).any(dim=1).all())


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """None, a floating torch dtype or its name (``bfloat16``, ``bf16``, ``torch.bfloat16``) -> the dtype."""
    if value is None or isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    name = str(value).removeprefix("torch.")
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(name, name)
    if name not in DTYPES:
        raise PipelineError(f"dtype {str(value)!r} is not a weight dtype; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


class Pipeline:
    """A model and its tokenizers. ``tokenizers`` maps a modality to its tokenizer, ``"text"`` to the text
    tokenizer; ``pixels`` maps a pixel modality to ``{"mean": [...], "std": [...]}`` (default: ImageNet's, 4M's);
    ``plans`` are named default plans."""

    def __init__(self, model: FourM, tokenizers: Mapping[str, Any] | None = None, *,
                 pixels: Mapping[str, dict] | None = None, plans: Mapping[str, Plan] | None = None):
        self.model = model.eval()
        # A released model's tokenizers load when first used (`official.ReleaseTokenizers`): kept as given.
        self.tokenizers = tokenizers if isinstance(tokenizers, ReleaseTokenizers) else dict(tokenizers or {})
        cfg = model.config
        self.pixels = {n: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)} for n in cfg.domains_in
                       if cfg.modality(n).kind is Kind.PIXELS} | dict(pixels or {})
        self.plans = dict(plans or {})

    # ---------------------------------------------------------------------------------------------- folders

    @classmethod
    @remember_sources
    def from_pretrained(cls, path: str | Path, *, text_tokenizer: str | Path | None = None,
                        tokenizers: Iterable[str | Path] | Mapping[str, str | Path] = (),
                        device: str | torch.device = "cpu", revision: str | None = None,
                        adapters: str | Path | None = None, dtype: torch.dtype | str | None = None,
                        low_memory: bool = False) -> Pipeline:
        """A bundle folder, or a FourM / official 4M folder with ``text_tokenizer`` and extra tokenizer folders
        (registered before the model loads, so a model over their token modalities loads too). Each of them may
        be a Hub repo id (``owner/name[@revision]``; ``revision`` applies to ``path``), resolved through the Hub
        cache by `polymodal.hub.resolve`.

        A released 4M-7 / 4M-21 model (``EPFL-VILAB/4M-21_XL``) gets the release's tokenizer of each token domain,
        loaded when first needed (`pipeline.official`); ``tokenizers`` then maps a domain to a folder that
        replaces the release's (``{"tok_depth@224": DIR}``, or ``["tok_depth@224=DIR"]``).

        ``adapters``: a LoRA adapter folder (a LoRA run's ``release/adapters``) trained on this model, merged into it
        (`FourM.load_adapters`); adapters of another base are refused.

        ``dtype``: the transformer's weights, e.g. ``torch.bfloat16`` or ``"bfloat16"`` (faster generation on CPUs
        with AVX512-BF16 or AMX, and on GPUs; greedy tokens may differ from float32's where two logits are close).
        The tokenizers stay float32 (they run once per input and output), except a released model's DiVAE UNets,
        which run in ``dtype`` too (its diffusion decodes are most of an RGB -> all run).

        ``low_memory``: a released model holds at most one tokenizer folder (beside the text tokenizer) at a time:
        each is checked before a run from its config and weights' header and loaded only while its inputs are
        encoded or its output decoded, then released (`official.ReleaseTokenizers`; same outputs). A bundle's
        tokenizers, polymodal's own and small, are loaded with it either way."""
        dtype = model_dtype(dtype)
        device = check_device(device)  # before anything loads or downloads
        path = hub.resolve(path, revision=revision, allow_patterns=_HUB_FILES)
        if not (path / BUNDLE_FILE).is_file() and is_official_model(path):
            overrides = split_overrides(tokenizers)  # checked before the model loads
            text = text_tokenizer_of(path, text_tokenizer)
            model = FourM.from_pretrained(path, dtype=dtype).to(device)
            model = model.load_adapters(adapters, merge=True) if adapters else model
            # A released model's DiVAE UNets follow the transformer's dtype: its bulk of the decode time, and in
            # bf16 +0.0001-0.0002 abs-rel on a trained depth decoder (benchmarks/divae_quality.py's decoder).
            diffusion = dtype if dtype is not None and dtype != torch.float32 else None
            return cls(model, ReleaseTokenizers(model.config, overrides=overrides, text=text,
                                                diffusion_dtype=diffusion, low_memory=low_memory))
        model, toks, pixels, plans = read_bundle(path, text_tokenizer=text_tokenizer, tokenizers=tokenizers,
                                                 device=device, adapters=adapters, dtype=dtype)
        return cls(model, toks, pixels=pixels, plans=plans)

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the bundle (see the module docstring); loadable with `from_pretrained`.

        ``half`` stores large floating tensors in float16 (half the bytes; loading casts them back to the module's
        float32), for weights shipped inside a package or downloaded.
        """
        path = check_not_a_source(self, path)  # not over the folder it was loaded from
        return write_bundle(self, path, half=half)

    # ---------------------------------------------------------------------------------------------- names

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.model.config.domains_in

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.model.config.domains_out

    def resolve(self, name: str, *, output: bool = False) -> str:
        """A model domain from a name or a short name (``depth`` -> ``tok_depth@64``; ``rgb`` -> the pixel input
        if the model has one, else the RGB tokens); a PipelineError with the closest names otherwise."""
        domains = self.outputs if output else self.inputs
        if name in domains:
            return name
        matches = [d for d in domains if base_name(d) == name]
        if len(matches) > 1:
            pixels = [d for d in matches if self.model.config.modality(d).kind is Kind.PIXELS]
            matches = pixels or [d for d in matches if d in self.tokenizers] or matches
        if matches:
            return matches[0]
        role = "output" if output else "input"
        other = self.inputs if output else self.outputs
        if name in other or any(base_name(d) == name for d in other):
            raise PipelineError(f"{name!r} is not an {role} of this model ({role}s: {', '.join(domains)})")
        known = list(domains) + sorted({base_name(d) for d in domains})
        raise PipelineError(f"unknown modality {name!r}{closest(name, known)} (this model's {role}s: "
                            f"{', '.join(domains)})")

    def resolve_inputs(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: input domain} (`resolve`); two keys that name one domain (``rgb`` and ``tok_rgb@64``, or a name
        twice) are refused, naming both, rather than one silently replacing the other."""
        found: dict[str, str] = {}
        for key in keys:
            name = self.resolve(key)
            first = next((k for k, n in found.items() if n == name), None)
            if first is not None:
                both = f"as {first!r} and as {key!r}" if first != key else f"twice as {key!r}"
                raise PipelineError(f"input {name} is given {both}; give each input once")
            found[key] = name
        return found

    # -------------------------------------------------------------------------------------------- inputs

    def prepare(self, values: Mapping[str, Any], *, resize: bool = True, notify: Callable[[str], None] | None = None,
                paths: bool = True) -> tuple[dict, dict, dict]:
        """(conditions for `generation.generate`, shown values, their picture kinds) of user values. ``paths=False``:
        values only, no string is read as a file (`inputs.refuse_paths`; a server takes requests this way)."""
        if not isinstance(values, Mapping):
            raise PipelineError(f"inputs: expected a mapping of modality name -> value, got {type(values).__name__}")
        notify = notify or _warn
        side = self._image_side()
        conds, shown, kinds = {}, {}, {}
        names = self.resolve_inputs(values)  # every name checked before any file is read
        for key, value in values.items():
            name = names[key]
            mod = self.model.config.modality(name)
            cond, show, kind = to_condition(name, mod, value, tokenizers=self.tokenizers,
                                            norm=self.pixels.get(name, {}), resize=resize, notify=notify, res=side,
                                            paths=paths)
            conds[name] = cond.to(self.model.mask_token.device) if isinstance(cond, torch.Tensor) else cond
            self._release([name])  # encoded: in low-memory mode its tokenizer goes before the next one loads
            if show is not None:
                shown[name], kinds[name] = show, kind
        sizes = {n: (c.shape[0] if isinstance(c, torch.Tensor) else c.batch_size) for n, c in conds.items()}
        if len(set(sizes.values()) - {1}) > 1:
            raise PipelineError(f"inputs have different batch sizes: {sizes}")
        return conds, shown, kinds

    def _release(self, names: Iterable[str]) -> None:
        """A released model's tokenizers of ``names`` released (low-memory mode; `ReleaseTokenizers.release`)."""
        if isinstance(self.tokenizers, ReleaseTokenizers):
            self.tokenizers.release(names)

    def _image_side(self) -> int:
        """The side in pixels of this model's images, which pixel boxes (the world's det) are measured in: its pixel
        inputs', else its RGB tokenizer's (a bundle's ViT VQ-VAE), else 224 (a released model's)."""
        cfg = self.model.config
        side = max((cfg.modality(n).image_size or (0,))[0] for n in self.inputs)
        if side:
            return side
        if isinstance(self.tokenizers, ReleaseTokenizers):  # looking one up would load it: releases are 224 px
            return 224
        sizes = [tok.cfg.image_size for n, tok in self.tokenizers.items()
                 if base_name(n) == "rgb" and isinstance(tok, ViTVQVAE)]
        return max(sizes, default=224)

    def conditions(self, values: Mapping[str, Any], *, resize: bool = True,
                   notify: Callable[[str], None] | None = None, paths: bool = True) -> dict[str, Any]:
        """User values (images, texts, boxes, dicts, vectors; see `pipeline.inputs`) -> conditions by domain."""
        return self.prepare(values, resize=resize, notify=notify, paths=paths)[0]

    def embed(self, inputs: Mapping[str, Any], *, resize: bool = True, notify: Callable[[str], None] | None = None,
              paths: bool = True) -> EncoderFeatures:
        """4M as an encoder: the encoder's token features (B, N, D), which modality each token came from, and
        their mean (B, D), of user ``inputs`` (values as `generate` takes them; `pipeline.embed`)."""
        from .embed import embed

        return embed(self, inputs, resize=resize, notify=notify, paths=paths)

    # ---------------------------------------------------------------------------------------- generation

    def plan(self, targets: Sequence[str] | str | None = None, *, plan: Plan | str | None = None,
             steps: int | None = None, temperature: float | None = None, guidance: float | None = None,
             top_k: int | float = 0, top_p: float = 0.0, until: str | None = None, given: Sequence[str] = ()) -> Plan:
        """A `Plan`: given, named (the bundle's plans, then the presets), or one step per target (``given``: the
        conditions' domains, which make an image target predicted or generated: `plans.targets_plan`)."""
        if isinstance(plan, Plan):
            return plan
        if isinstance(plan, str):
            if plan in self.plans:
                return self.plans[plan]
            chain = preset_plan(self.model.config, plan, until=until and self.resolve(until, output=True),
                                steps=steps, temperature=temperature, guidance=guidance)
            return demo_settings(chain) if isinstance(self.tokenizers, ReleaseTokenizers) else chain
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        if targets is not None and not (isinstance(targets, Sequence) and all(isinstance(t, str) for t in targets)):
            raise PipelineError(f"targets: expected modality names (a list, or one string with commas), got "
                                f"{type(targets).__name__}")
        if not targets:
            raise PipelineError("nothing to generate: give targets or a plan")
        names = [self.resolve(t, output=True) for t in targets]
        return targets_plan(self.model.config, names, given=given, steps=steps, temperature=temperature,
                            guidance=guidance, top_k=top_k, top_p=top_p)

    def decode(self, ids: Mapping[str, torch.Tensor], *, decode_steps: int | None = None, sampler: str | None = None,
               seed: int = 0, progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        """Decoded values and picture kinds; image tokens without a tokenizer stay ids on their grid ("tokens").
        A released model's outputs decode through `official_values.decode_release` (``decode_steps`` and
        ``sampler`` of its diffusion decoders, seeded with ``seed``; ``progress``: a bar per decode)."""
        if isinstance(self.tokenizers, ReleaseTokenizers):
            return decode_release(self.model.config, ids, self.tokenizers, steps=decode_steps, sampler=sampler,
                                  seed=seed, progress=progress)
        values, kinds = {}, {}
        for name, x in ids.items():
            mod = self.model.config.modality(name)
            has = name in self.tokenizers or (mod.kind is Kind.SEQUENCE and TEXT in self.tokenizers)
            if not has:
                if mod.kind is Kind.SEQUENCE:
                    continue
                values[name], kinds[name] = x.reshape(x.shape[0], *mod.grid).cpu(), "tokens"
                continue
            tok = {name: self.tokenizers.get(name) or self.tokenizers[TEXT]}
            values[name] = decode_outputs({name: x.cpu()}, tok)[name]
            kinds[name] = value_kind(name, tok)
        return values, kinds

    def generate(self, inputs: Mapping[str, Any], targets: Sequence[str] | str | None = None, *,
                 plan: Plan | str | None = None, steps: int | None = None, temperature: float | None = None,
                 guidance: float | None = None, seed: int = 0, top_k: int | float = 0, top_p: float = 0.0,
                 resize: bool = True, notify: Callable[[str], None] | None = None, paths: bool = True,
                 decode_steps: int | None = None, sampler: str | None = None, progress: bool = False) -> Outputs:
        """Generate ``targets`` (or run ``plan``) from user ``inputs``; same seed, same outputs. ``paths=False``:
        values only, no input string is ever read as a file. ``decode_steps``, ``sampler``, ``progress``: a
        released model's diffusion decoders (`decode`)."""
        notices: list[str] = []

        def note(message: str) -> None:
            notices.append(message)
            (notify or _warn)(message)

        seed = check("seed", seed)
        check_decode_settings(decode_steps, sampler)
        if plan is None:
            self.plan(targets)  # a wrong target fails before the inputs are read
        release = isinstance(self.tokenizers, ReleaseTokenizers)
        if release:  # every tokenizer the run needs, loaded and checked before any input is read
            given = list(self.resolve_inputs(inputs).values())
            self.tokenizers.require([*given, *self.plan(targets, plan=plan, steps=steps, given=given).targets])
            self._release(self.tokenizers.loaded)  # low-memory: what an earlier look-up left loaded goes first
        conds, shown, kinds = self.prepare(inputs, resize=resize, notify=note, paths=paths)
        the_plan = self.plan(targets, plan=plan, steps=steps, temperature=temperature, guidance=guidance,
                             top_k=top_k, top_p=top_p, given=list(conds))
        # A sequence given and asked for is a prompt to complete where it has sentinels [S_k] (span infilling).
        # Only a sequence: image token ids 4..203 are the sentinels' ids too, and nearly every image has some.
        seq = {t for t in the_plan.targets if self.model.config.modality(t).kind is Kind.SEQUENCE}
        clash = [t for t in the_plan.targets if t in conds and not (t in seq and _has_sentinel(conds[t]))]
        if clash:
            hint = (" (to fill in a text, mark the spans to write with [S_1], [S_2], ... in it)"
                    if seq.intersection(clash) else "")
            raise PipelineError(f"{', '.join(clash)}: given as input and asked as output; drop one of them{hint}")
        if guidance is not None and float(guidance) != 1 and not conds and not the_plan.grow_conditioning:
            note(f"guidance {float(guidance):g} has no effect: no input is given to guide by")  # u + s (c - u) = c
        b = max((c.shape[0] if isinstance(c, torch.Tensor) else c.batch_size for c in conds.values()), default=1)
        ids = generate(self.model, conds, the_plan, seed=seed, batch_size=b if b > 1 else None)
        values, out_kinds = self.decode(ids, decode_steps=decode_steps, sampler=sampler, seed=seed, progress=progress)
        for name in [n for n in ids if n not in values]:  # a sequence without a text tokenizer: said, not a gap
            note(f"{name}: no text tokenizer to decode it, so it is kept as ids only (tokens.safetensors); load the "
                 "pipeline with one (--text-tokenizer PATH) to get its text")
        return Outputs(ids, values, kinds | out_kinds, inputs=shown, plan=the_plan, notices=notices,
                       record_pictures=release)
