"""polymodal.pipeline: generation in one call — a model with its tokenizers (a bundle folder), user values in,
decoded values, pictures and files out.

    from polymodal.pipeline import Pipeline, generate_files

    pipe = Pipeline.from_pretrained("weights/default")   # a bundle, or a FourM / official 4M folder with
    #                                        text_tokenizer="text_tokenizer_4m_wordpiece_30k.json"
    out = pipe.generate({"rgb": "scene.png", "caption": "two red cubes"}, ["depth", "det", "caption"], seed=0)
    out.ids["tok_depth@64"]          # (B, 64) token ids per target
    out.values["det"]                # decoded values: [[Box(...), ...]], captions as strings, depth (B, H, W) metres
    out.grid().save("grid.png")      # inputs and outputs, one row per sample
    out.save("out/")                 # PNG / JSON / TXT per output + tokens.safetensors + grid.png

    generate_files("weights/default", {"rgb": "scene.png"}, "depth,det", "out/")   # the same, one call

API (what `polymodal generate`, `polymodal demo` and `polymodal.eval` build on):

- ``Pipeline(model, tokenizers, *, pixels=None, plans=None)``; ``tokenizers``: modality -> tokenizer, ``"text"`` ->
  the text tokenizer; ``pixels``: pixel modality -> ``{"mean", "std"}`` (default ImageNet's, as 4M).
- ``Pipeline.from_pretrained(path, *, text_tokenizer=None, tokenizers=(), device="cpu", dtype=None,
  low_memory=False)``,
  ``Pipeline.save(path)``: the bundle format of `pipeline.bundle`; ``dtype="bfloat16"`` holds the transformer's
  weights in bf16 (faster generation where bf16 is native; the tokenizers stay float32). A released 4M-7 / 4M-21
  model (``"EPFL-VILAB/4M-21_XL"``) gets the
  release's tokenizer of each domain, loaded when first needed and checked against it (`pipeline.official`;
  ``tokenizers={"tok_depth@224": FOLDER}`` replaces one); its outputs decode as `pipeline.official_values` says.
  ``low_memory=True`` (what ``polymodal generate`` does with a release) holds one tokenizer folder at a time: each
  is checked from its config and weights' header before a run, loaded for its input or output, then released.
- ``pipe.inputs`` / ``pipe.outputs``: model domains; ``pipe.resolve(name, output=False)``: a domain from a short
  name (``depth`` -> ``tok_depth@64``, ``rgb`` -> the pixel input, else the RGB tokens).
- ``pipe.conditions(values, *, resize=True, notify=None, paths=True) -> {domain: tensor}``: images (paths, PIL,
  arrays, tensors; resized with a notice, or refused with ``resize=False``), texts, boxes, metadata/palette dicts,
  vectors (see `pipeline.inputs`), ready for `polymodal.generation.generate`. ``paths=False`` takes values only: no
  string is ever read as a file (what `polymodal serve` does with every request).
- ``pipe.plan(targets, *, plan=None, steps, temperature, guidance, top_k, top_p, until)``: a `generation.Plan`;
  ``plan`` a Plan, a bundle plan name or a preset (``rgb_to_all``, ``caption_to_all``, ``det_to_all``).
- ``pipe.generate(inputs, targets=None, *, plan=None, steps=None, temperature=None, guidance=None, seed=0, top_k=0,
  top_p=0.0, resize=True, notify=None, paths=True, decode_steps=None, sampler=None) -> Outputs``: a batch when
  inputs are lists (or batched tensors); a text both given and asked for is filled in where it holds sentinels
  (``"a [S_1] cube"``); ``decode_steps``/``sampler``: a released model's diffusion decoders.
- ``pipe.decode(ids, *, decode_steps=None, sampler=None, seed=0) -> (values, kinds)``.
- ``pipe.embed(inputs, *, resize=True, notify=None, paths=True) -> model.features.EncoderFeatures``: 4M as an
  encoder, the encoder's token features (B, N, D) of any inputs with each token's modality and position, and their
  mean (B, D); `pipeline.embed.embed_folder` is ``polymodal embed`` (a folder of images -> features.safetensors).
- ``Outputs``: ``ids``, ``values``, ``kinds``, ``inputs`` (shown input values), ``plan``, ``notices``; ``grid()``,
  ``tiles(b)``, ``save(out_dir)`` (files: `pipeline.outputs`).
- ``pipeline.demo.run_demo(model=None, *, image=None, out="demo", scenes=2, seed=0)``: `polymodal demo`.
- World samples -> these values: `polymodal.data.world.values.world_values` / ``batch_values``.

Every bad input raises `PipelineError` (a ValueError) saying which modality or file and what would fix it; the
CLI prints it and exits with code 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .bundle import BUNDLE_FILE, Pipeline, ResizeNotice
from .inputs import IMAGENET_MEAN, IMAGENET_STD, PipelineError
from .outputs import Outputs
from .plans import preset_plan, targets_plan


def generate_files(model: str | Path, inputs: Mapping[str, Any], targets: Sequence[str] | str | None,
                   out_dir: str | Path, *, text_tokenizer: str | Path | None = None, **options) -> Outputs:
    """Load ``model`` (any folder `Pipeline.from_pretrained` takes), generate, write the files to ``out_dir``.
    ``options`` go to `Pipeline.generate` (plan, steps, temperature, guidance, seed, resize, ...)."""
    pipe = Pipeline.from_pretrained(model, text_tokenizer=text_tokenizer)
    out = pipe.generate(inputs, targets, **options)
    out.save(out_dir)
    return out


__all__ = ["BUNDLE_FILE", "IMAGENET_MEAN", "IMAGENET_STD", "Outputs", "Pipeline", "PipelineError", "ResizeNotice",
           "generate_files", "preset_plan", "targets_plan"]
