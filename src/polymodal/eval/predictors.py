"""What the runner evaluates: a predictor, ``predict(inputs, targets) -> outputs``, in the world's value formats.

    predict({"rgb": [img0, img1]}, ["depth", "det"]) -> {"depth": [d0, d1], "det": [boxes0, boxes1]}

Inputs and outputs map a world key (`polymodal.data.world.sample`) to a list of per-sample values, one per sample
of the batch, in the world's formats: ``rgb`` uint8 (H, W, 3); ``depth`` float (H, W) metres; ``normal`` float
(H, W, 3); ``semseg`` int (H, W); ``det`` a list of ``{"class", "box"}`` pixel boxes (optional ``"score"``;
without scores the list order is the confidence); ``caption`` a string; ``minilm_global`` a float (D,) vector.
A model is wrapped into this protocol by an adapter (`pipeline_predictor`), so the metrics never see tokens.

Two predictors are built from the test set itself:

- `Oracle`: answers every question with the ground truth of the sample its inputs come from (found by the
  inputs' bytes); the runner's tests check that it scores perfectly, and a ``transform`` corrupts it;
- `ceiling_predictor`: the oracle's answers through each tokenizer, decode(encode(ground truth)): the best a model
  predicting tokens can score (4M's tokenizer ceiling).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

Predict = Callable[[Mapping[str, Sequence[Any]], Sequence[str]], dict[str, list[Any]]]
Transform = Callable[[str, list[Any]], list[Any]]


def value_key(value: Any) -> str:
    """A fingerprint of one input value (array bytes, text, or a box list) to find its sample."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        data = value.tobytes() + str(value.shape).encode()
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = json.dumps([{"class": d["class"], "box": [int(c) for c in d["box"]]} for d in value]).encode()
    return hashlib.sha1(data).hexdigest()


class Oracle:
    """Ground truth for any inputs taken from ``samples`` (`Predict`); ``transform(key, values)`` changes the
    answers of a target (e.g. noise, shifted boxes, or a tokenizer round trip)."""

    def __init__(self, samples: Sequence[Mapping[str, Any]], *, transform: Transform | None = None,
                 keys: Sequence[str] = ("rgb", "caption", "det")) -> None:
        self.samples, self.transform = samples, transform
        self.index = {(k, value_key(s[k])): i for i, s in enumerate(samples) for k in keys if k in s}

    def find(self, inputs: Mapping[str, Sequence[Any]]) -> list[int]:
        """The sample of each row of ``inputs`` (the first input key that is known decides)."""
        name = next(iter(inputs))
        try:
            return [self.index[(name, value_key(v))] for v in inputs[name]]
        except KeyError:
            raise KeyError(f"oracle: an input {name!r} that is no sample's (the oracle only knows its test set)"
                           ) from None

    def __call__(self, inputs: Mapping[str, Sequence[Any]], targets: Sequence[str]) -> dict[str, list[Any]]:
        rows = self.find(inputs)
        out = {t: [self.samples[i][t] for i in rows] for t in targets}
        if self.transform is not None:
            out = {t: self.transform(t, v) for t, v in out.items()}
        return out


def roundtrip(key: str, values: list[Any], tokenizer, *, res: int) -> list[Any]:
    """decode(encode(values)) of world key ``key`` through ``tokenizer``, in the world's formats (see the module
    doc); ``res`` is the image side that normalizes boxes."""
    from ..tokenizers.serializers import SERIALIZERS, boxes_from_world, boxes_to_pixels

    with torch.no_grad():
        if key == "det":
            ser = SERIALIZERS["det"]
            rows = [ser.encode(boxes_from_world(v, res), tokenizer) for v in values]
            return [boxes_to_pixels(ser.decode(r, tokenizer), res) for r in rows]
        if key == "caption":
            return tokenizer.decode(tokenizer.encode(list(values)))
        if key == "minilm_global":
            x = torch.as_tensor(np.stack(values), dtype=torch.float32)
            return list(tokenizer.decode(tokenizer.encode(x)).numpy())
        x = torch.from_numpy(np.stack(values))
        if x.ndim == 4:  # (B, H, W, C) -> (B, C, H, W)
            x = x.permute(0, 3, 1, 2)
        x = x.long() if key == "semseg" else x if x.dtype == torch.uint8 else x.float()
        y = tokenizer.decode(tokenizer.encode(x))
        if y.ndim == 4:
            y = y.permute(0, 2, 3, 1)
        if key == "rgb":
            y = (y * 255).round().clamp(0, 255).to(torch.uint8)
        return list(y.numpy())


def ceiling_predictor(samples: Sequence[Mapping[str, Any]], tokenizers: Mapping[str, Any], *, res: int) -> Oracle:
    """The tokenizer ceiling: an `Oracle` whose answers go through decode(encode(.)) of ``tokenizers[key]``
    (world key -> tokenizer; a target without a tokenizer is answered exactly)."""
    def transform(key: str, values: list[Any]) -> list[Any]:
        tok = tokenizers.get(key)
        return values if tok is None else roundtrip(key, values, tok, res=res)

    return Oracle(samples, transform=transform)
