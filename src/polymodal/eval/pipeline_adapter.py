"""A `Pipeline` as an evaluation predictor: world values in, world values out (the protocol of `predictors`).

    pipe = Pipeline.from_pretrained("weights/default")
    results = evaluate(pipeline_predictor(pipe), world_test_set(200))

Each target is generated in its own call (``pipe.generate(inputs, [target])``), so a task's answer never depends
on another target decoded before it in a chain. Decoding: perception targets (everything but ``rgb``) greedily
(temperature 0: the model's single best answer, as a metric wants) and image tokens in one step, as 4M-21's demo
decodes RGB -> X (ROAR, one step, temperature 0.01): committing tokens over several steps feeds the model its own
early guesses, which on the default model costs 0.11 depth abs-rel (0.315 in one step, 0.424 in eight, 200
held-out scenes); generated images (``rgb``) with the pipeline's defaults (several MaskGIT steps) unless
``generation_steps``/``generation_temperature`` say otherwise, since greedy one-step image generation collapses.
Every sample of a batch gets the same ``seed``.

Conversions (the pipeline's decoded values -> the world's formats): images (B, C, H, W) -> (H, W, C) arrays, RGB
0..1 -> uint8; boxes (normalized `Box`, in the model's order) -> ``{"class", "box"}`` in pixels of ``res``;
vectors (B, D) -> (D,) arrays; captions stay strings. World ``det`` inputs go in as normalized boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .predictors import Predict


def model_resolution(pipe) -> int:
    """The image side of the pipeline's inputs (the world's resolution it was trained at)."""
    cfg = pipe.model.config
    return max((cfg.modality(n).image_size or (0,))[0] for n in pipe.inputs) or 64


def to_pipeline(key: str, values: Sequence[Any], res: int) -> Any:
    """A batch of world values of ``key`` as pipeline inputs."""
    if key == "det":
        from ..tokenizers.serializers import boxes_from_world

        return [boxes_from_world(v, res) for v in values]
    return list(values)


def to_world(key: str, values: Any, res: int) -> list[Any]:
    """A pipeline's decoded batch of ``key`` as per-sample world values (see the module doc)."""
    if key == "det":
        return [[{"class": b.label, "box": [b.xmin * res, b.ymin * res, b.xmax * res, b.ymax * res]} for b in boxes]
                for boxes in values]
    if key == "caption":
        return list(values)
    x = values.detach().cpu() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if key in ("rgb", "normal") and x.ndim == 4:
        x = x.permute(0, 2, 3, 1)
    if key == "rgb":
        x = (x.float() * 255).round().clamp(0, 255).to(torch.uint8)
    return list(x.numpy())


def pipeline_predictor(pipe, *, seed: int = 0, steps: int | None = 1, temperature: float = 0.0,
                       generation_steps: int | None = None, generation_temperature: float | None = None,
                       guidance: float | None = None, res: int | None = None) -> Predict:
    """A `Predict` over ``pipe`` (a `polymodal.pipeline.Pipeline`); see the module doc for the decoding."""
    side = res or model_resolution(pipe)

    def predict(inputs: Mapping[str, Sequence[Any]], targets: Sequence[str]) -> dict[str, list[Any]]:
        given = {k: to_pipeline(k, v, side) for k, v in inputs.items()}
        out = {}
        for t in targets:
            name = pipe.resolve(t, output=True)
            gen = t == "rgb"
            result = pipe.generate(given, [name], seed=seed, steps=generation_steps if gen else steps,
                                   temperature=generation_temperature if gen else temperature, guidance=guidance,
                                   notify=lambda message: None)
            out[t] = to_world(t, result.values[name], side)
        return out

    predict.supports = lambda task: supports(pipe, task)  # the runner skips what the model cannot do
    return predict


def supports(pipe, task: str) -> str | None:
    """None when ``pipe`` has every input and output of ``task`` (and of its read-back), else the reason."""
    from .tasks import TASKS

    t = TASKS[task]
    wanted = [(k, False) for k in t.inputs] + [(k, True) for k in t.targets]
    if t.generation:
        wanted += [("rgb", False), ("det", True), ("semseg", True)]
    missing = []
    for key, output in wanted:
        try:
            pipe.resolve(key, output=output)
        except ValueError:
            missing.append(f"{key} ({'output' if output else 'input'})")
    return f"the model lacks {', '.join(missing)}" if missing else None
