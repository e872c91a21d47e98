"""User values -> model conditions: images (paths, PIL, arrays, tensors), texts, boxes, metadata, palettes, vectors.

`to_condition(name, mod, value, ...)` gives one model domain's batched condition and what to show of it:

==================  ======================================  =================================================
domain kind         value                                   condition
==================  ======================================  =================================================
pixels (rgb@64)     image: path, PIL, (H, W, 3) uint8,      (B, 3, S, S) float, ``(x - mean) / std`` with the
                    (3, H, W) float 0..1; a list = a batch  pipeline's per-modality normalization
image tokens        the tokenizer's values (rgb/edge also   (B, N) ids via the tokenizer (`ViTVQVAE`,
                    from image files; depth, normal, semseg `MLPTokenizer`), or int ids (B, N) given as they are
                    as arrays) or a vector for global tokens
sequences           str (caption; det/metadata/palette also (B, L) ids, [EOS] then [PAD], through the text
                    as JSON text or a .json path), boxes,   tokenizer and the modality's serializer
                    dicts, colour lists
sequence of vectors (D,) or (L, D) float                    (B, L, D)
==================  ======================================  =================================================

Images of another size are centre-cropped to a square and resized, with a notice through ``notify``; with
``resize=False`` they are refused. Every refusal is a `PipelineError` naming the modality (and the file).
With ``paths=False`` (values only, what `polymodal serve` uses) no string is ever opened as a file: image and vector
domains refuse strings, and a det/metadata/palette string is JSON text or the modality's text, never a path.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..data.batch import ModalityTokens
from ..data.images import DECODE_SIDE, ImageFileError, as_mode, open_image
from ..modalities import Kind, Modality
from ..tokenizers.mlp import MLPTokenizer
from ..tokenizers.serializers import SERIALIZERS, Box, metadata_from_world, palette_from_world
from ..tokenizers.text import TextTokenizer
from ..tokenizers.vqvae import ViTVQVAE
from ..viz.decode import base_name

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # 4M's pixel normalization


class PipelineError(ValueError):
    """Input a pipeline cannot use: the message names the modality or file and what would fix it."""


def closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.4)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _is_image_item(v: Any) -> bool:
    return isinstance(v, (str, Path, Image.Image))


def read_image(path: str | Path, what: str, mode: str = "RGB") -> Image.Image:
    """An image file as 8-bit ``mode``, large ones decoded at reduced size (`data.images.open_image`)."""
    return _read(path, what, mode)[0]


def _read(path: str | Path, what: str, mode: str) -> tuple[Image.Image, tuple[int, int]]:
    try:  # open_image names a missing, empty, folder or non-image file itself
        return open_image(path, mode=mode, name=f"image file {str(Path(path).expanduser())!r}")
    except ImageFileError as e:
        raise PipelineError(f"{what}: {e}") from None


def image_items(value: Any, what: str = "images") -> list[Any]:
    """A value as a list of per-sample images (a list, or a tensor/array with a batch axis, is a batch)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise PipelineError(f"{what}: an empty list; give at least one image")
        return list(value)
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 4:
        return list(value)
    return [value]


def to_chw(item: Any, what: str, *, gray: bool = False) -> torch.Tensor:
    """One image -> float tensor (C, H, W) 0..1 (``gray``: (H, W))."""
    return image_tensor(item, what, gray=gray)[0]


def image_tensor(item: Any, what: str, *, gray: bool = False) -> tuple[torch.Tensor, tuple[int, int]]:
    """(`to_chw` of one image, the (width, height) it has as given). Files and PIL images convert by value
    (16-bit grey: 65535 -> 1) and large ones are box-reduced first (short side >= `DECODE_SIDE`), so the float
    copies stay small; arrays: uint8 / 255, uint16 / 65535, floats as they are."""
    mode, size = ("L" if gray else "RGB"), None
    if isinstance(item, (str, Path)):
        if not str(item).strip():  # Path("") is "." : "image file '.' not found" named no file
            raise PipelineError(f"{what}: an empty file name; give an image file")
        item, size = _read(item, what, mode)
    elif isinstance(item, Image.Image):
        size = item.size
        item = as_mode(item, mode, min_side=DECODE_SIDE)
    elif not isinstance(item, (torch.Tensor, np.ndarray)):
        raise PipelineError(f"{what}: expected an image (a file path, a PIL image, an array or a tensor), got "
                            f"{type(item).__name__}")
    t = torch.as_tensor(np.array(item)) if not isinstance(item, torch.Tensor) else item
    scale = {torch.uint8: 255.0, torch.uint16: 65535.0}.get(t.dtype, 1.0)
    if scale == 1.0 and t.dtype.is_floating_point and t.numel():
        # floats are taken as they are, 0..1: a 0..255 float array or an ImageNet-normalized tensor would give a
        # clipped, wrong picture without a word (the tokenizer's own check names NaN and infinities)
        lo, hi = (float(x) for x in torch.aminmax(t.detach().float()))
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise PipelineError(f"{what}: float image values must be from 0 to 1 (uint8 arrays are read as 0 to "
                                f"255), got {lo:.3g} to {hi:.3g}")
    t = t.float().div_(scale) if scale != 1.0 else t.float()  # in place: one float copy of a large image
    if gray:
        if t.ndim == 3 and 1 in (t.shape[0], t.shape[-1]):
            t = t.reshape(t.shape[-2:] if t.shape[0] == 1 else t.shape[:2])
        if t.ndim != 2:
            raise PipelineError(f"{what}: expected a grey image (H, W), got shape {tuple(t.shape)}")
    else:
        if t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
            t = t.permute(2, 0, 1)
        if t.ndim != 3 or t.shape[0] != 3:
            raise PipelineError(f"{what}: expected an RGB image ((H, W, 3) or (3, H, W)), got shape "
                                f"{tuple(t.shape)}")
    return t.contiguous(), size or (int(t.shape[-1]), int(t.shape[-2]))


def fit(x: torch.Tensor, size: int, what: str, *, resize: bool, notify: Callable[[str], None],
        nearest: bool = False, given: tuple[int, int] | None = None) -> torch.Tensor:
    """(C, H, W) or (H, W) -> side ``size``: centre crop to a square, then resize; or refuse (``resize=False``).
    ``given``: the (width, height) the image had as given, named in the messages (a large file is decoded smaller)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    gw, gh = given or (w, h)
    if not resize:
        raise PipelineError(f"{what}: the image is {gw}x{gh} pixels, the model takes {size}x{size}; pass it at that "
                            "size or allow resizing (without --no-resize)")
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = x[..., top:top + s, left:left + s]
    notify(f"{what}: {gw}x{gh} image {'centre-cropped and ' if gh != gw else ''}resized to {size}x{size}")
    y = crop.float()[None] if crop.ndim == 3 else crop.float()[None, None]
    if nearest:
        y = F.interpolate(y, size=(size, size), mode="nearest")
    else:
        y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=s > size, align_corners=False)
    y = y[0] if x.ndim == 3 else y[0, 0]
    return y.to(x.dtype) if nearest else y


def pixels(name: str, mod: Modality, value: Any, norm: dict, *, resize: bool,
           notify: Callable[[str], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition (B, 3, S, S) normalized, shown (B, 3, S, S) 0..1)."""
    s = mod.image_size[0]
    shown = []
    for v in image_items(value, name):
        x, given = image_tensor(v, name)
        shown.append(fit(x, s, name, resize=resize, notify=notify, given=given))
    shown = torch.stack(shown)
    mean = torch.tensor(norm.get("mean", IMAGENET_MEAN)).view(1, -1, 1, 1)
    std = torch.tensor(norm.get("std", IMAGENET_STD)).view(1, -1, 1, 1)
    return (shown - mean) / std, shown


def tokenizer_values(name: str, tok: ViTVQVAE, value: Any, *, resize: bool,
                     notify: Callable[[str], None]) -> torch.Tensor:
    """The values a VQ-VAE encodes, batched, at its size: rgb/edge from images, others from arrays."""
    kind, s = tok.cfg.values, tok.cfg.image_size
    out = []
    for item in image_items(value, name):
        given = None
        if kind in ("rgb", "edge"):
            x, given = image_tensor(item, name, gray=kind == "edge")
        elif _is_image_item(item):
            raise PipelineError(f"{name}: {kind} values are read from arrays or tensors in natural units, not "
                                "image files (only rgb and edge images are)")
        else:
            x = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
            if kind == "normal" and x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
                x = x.permute(2, 0, 1)
            x = x.long() if kind == "semseg" else x.float()
        out.append(fit(x, s, name, resize=resize, notify=notify, nearest=kind == "semseg", given=given))
    return torch.stack(out)


def _parse_text_value(base: str, v: Any, name: str, *, paths: bool = True) -> Any:
    """det/metadata/palette given as JSON text, or (``paths``) a .json file (what `Outputs.save` writes), are read
    back. Without ``paths`` the string is never looked up on disk: a text that names a file stays that text."""
    if not isinstance(v, str) or base in ("caption", "text"):
        return v
    text = v.strip()
    if paths and text.endswith(".json"):
        if not Path(text).expanduser().is_file():  # else its name was tokenized as the modality's text
            raise PipelineError(f"{name}: file {text!r} not found")
        text = Path(text).expanduser().read_text()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise PipelineError(f"{name}: not valid JSON ({e})") from None
    return v


def vectors(name: str, value: Any) -> torch.Tensor:
    """A vector value as a float tensor: a tensor, an array, a list of numbers, or (the command line's) a .json file
    holding such a list (what `Outputs.save` writes for a global vector) or that list as JSON text."""
    if isinstance(value, (str, Path)):
        text, file = str(value).strip(), Path(value).expanduser()
        if text.endswith(".json") and file.is_file():
            text = file.read_text().strip()
        try:
            value = json.loads(text) if text[:1] == "[" else None
        except json.JSONDecodeError as e:
            raise PipelineError(f"{name}: not valid JSON ({e})") from None
        if value is None:
            raise PipelineError(f"{name}: {text!r:.80} is neither a .json file nor JSON text of a list of numbers")
    try:
        v = value.float() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise PipelineError(f"{name}: expected a vector of numbers ({e})") from None
    if v.ndim == 0:
        raise PipelineError(f"{name}: expected a vector of numbers, got one number")
    return v


def _boxes(v: Any, res: int, name: str) -> list[Box]:
    if not isinstance(v, (list, tuple)):  # a dict would be read key by key as boxes
        raise PipelineError(f"{name}: expected a list of boxes, got a {type(v).__name__}")
    out = []
    for i, b in enumerate(v):
        if isinstance(b, Box):
            out.append(b)
            continue
        try:
            coords, label = [float(c) for c in b["box"]], str(b["class"])
        except (KeyError, TypeError, ValueError) as e:
            raise PipelineError(f"{name}: box {i} is not a Box or {{'class': ..., 'box': [x0, y0, x1, y1]}} "
                                f"({e}): {b!r:.80}") from None
        if len(coords) != 4:
            raise PipelineError(f"{name}: box {i} has {len(coords)} coordinates, expected 4 [x0, y0, x1, y1]: "
                                f"{b!r:.80}")
        scale = res if max(coords) > 1.0 else 1.0  # pixel boxes (the world's) -> normalized
        if scale != 1.0 and not all(0 <= c <= res for c in coords):  # named in the pixels given, not scaled
            raise PipelineError(f"{name}: box {i} ({label!r}) has pixel coordinates {coords} outside the model's "
                                f"{res}x{res} image (or give 0..1 coordinates)")
        out.append(Box(*(c / scale for c in coords), label))
    return out


def sequence_row(name: str, mod: Modality, v: Any, text: TextTokenizer, res: int, *,
                 paths: bool = True, notify: Callable[[str], None] | None = None) -> list[int]:
    """One sample's ids of sequence domain ``name`` (ids + [EOS], at most the modality's length). ``notify``: where
    a text cut to that length is reported (else the tokenizer's warning)."""
    base = base_name(name)
    v = _parse_text_value(base, v, name, paths=paths)
    if isinstance(v, str):
        if not v.strip():
            raise PipelineError(f"{name}: empty text; give some words or leave {name} out of the inputs")
        if notify is None or text.config.truncation == "error":
            return text.encode_lists([v], max_length=mod.max_length)[0]
        # Uncut, then cut here as 4M cuts (after [EOS]): the cut is a notice naming the modality, which a command
        # prints as one line, instead of a Python warning with its source line.
        ids = text.encode_lists([v], max_length=1 << 62)[0]  # uncut
        if len(ids) > mod.max_length:
            notify(f"{name}: text is {len(ids)} tokens with [EOS], over the maximum of {mod.max_length}: cut by "
                   f"{len(ids) - mod.max_length} tokens (the cut sequence has no [EOS], as in 4M)")
        return ids[:mod.max_length]
    serializer = SERIALIZERS.get(base)
    if serializer is None:
        raise PipelineError(f"{name}: expected a string, got {type(v).__name__}")
    if base == "det":
        v = _boxes(v, res, name)
    elif base == "metadata" and isinstance(v, dict):
        v = metadata_from_world(v)
    elif base == "color_palette" and isinstance(v, dict):
        v = palette_from_world(v)
    try:
        return serializer.encode(v, text, max_tokens=mod.max_length)
    except (ValueError, TypeError) as e:  # serializers name the base modality ("det: box 0 ..."): say it once
        msg = str(e)
        raise PipelineError(msg if msg.startswith(f"{base}:") or msg.startswith(f"{name}:") else f"{name}: {msg}") \
            from None


def sequence_items(name: str, v: Any) -> list[Any]:
    """A sequence value as per-sample values: a str or dict is one sample; a list of strings (or of metadata
    dicts) is a batch; for det, palettes, poses and instances, a list of lists is a batch."""
    base = base_name(name)
    if isinstance(v, (list, tuple)) and v:
        first = v[0]
        if isinstance(first, str) or (base == "metadata" and isinstance(first, dict)):
            return list(v)
        if base in SERIALIZERS and isinstance(first, (list, tuple)) and (
                not first or not isinstance(first[0], (int, float))):
            return list(v)
    return [v]


def refuse_paths(name: str, mod: Modality, value: Any) -> None:
    """Values only: a string (or Path) is a text for a sequence domain and nothing else, never a file to open.

    Only two places turn a string into a file read: an image item (`to_chw`, `tokenizer_values`) and a
    det/metadata/palette ``.json`` (`_parse_text_value`, switched off by ``paths=False``). This closes the first for
    every other kind, so a request cannot name a file whatever the modality."""
    if mod.kind is Kind.SEQUENCE:
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, (str, Path)) for v in items):
        what = "an image" if mod.kind in (Kind.PIXELS, Kind.IMAGE_TOKENS) else "a vector"
        raise PipelineError(f"{name}: give {what} as a value; a string is not taken here (file paths are not read)")


def to_condition(name: str, mod: Modality, value: Any, *, tokenizers: dict, norm: dict, resize: bool,
                 notify: Callable[[str], None], res: int, paths: bool = True) -> tuple[Any, Any, str]:
    """(condition for `generate`, value to show, its picture kind) of one model input domain. ``paths=False``:
    values only, no string is ever read as a file (`refuse_paths`; what a server's requests get)."""
    if isinstance(value, ModalityTokens):
        return value, None, ""
    if not paths:
        refuse_paths(name, mod, value)
    if mod.kind is Kind.PIXELS:
        cond, shown = pixels(name, mod, value, norm, resize=resize, notify=notify)
        return cond, shown, "rgb"
    if isinstance(value, torch.Tensor) and not value.dtype.is_floating_point and mod.kind is not Kind.PIXELS:
        ids = value[None] if value.ndim == 1 else value
        return ids, None, ""
    if mod.kind is Kind.SEQUENCE:
        text = tokenizers.get(name) or tokenizers.get("text")
        if not isinstance(text, TextTokenizer):
            raise PipelineError(f"{name}: no text tokenizer to write it with; load the pipeline with one "
                                "(--text-tokenizer PATH, or a bundle that has it)")
        items = sequence_items(name, value)
        rows = [sequence_row(name, mod, v, text, res, paths=paths, notify=notify) for v in items]
        over = [i for r in rows for i in r if i >= mod.vocab_size]
        if over:
            raise PipelineError(f"{name}: token id {over[0]} ({text.decode_piece([over[0]])!r}) is outside this "
                                f"model's vocabulary of {mod.vocab_size} ids")
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, :len(r)] = torch.tensor(r)
        shown = text.decode(ids) if base_name(name) in ("caption", "text") else [
            SERIALIZERS[base_name(name)].decode(r, text) for r in rows] if base_name(name) in SERIALIZERS else None
        kind = base_name(name) if base_name(name) in SERIALIZERS or base_name(name) == "caption" else "text"
        return ids, shown, kind
    if mod.kind is Kind.SEQUENCE_EMB:
        v = vectors(name, value)
        v = v.reshape(-1, v.shape[-1])[None] if v.ndim < 3 else v
        return v, v[:, 0], "vector"
    tok = tokenizers.get(name)
    if isinstance(tok, ViTVQVAE):
        values = tokenizer_values(name, tok, value, resize=resize, notify=notify)
        return tok.encode(values), values, tok.cfg.values
    if isinstance(tok, MLPTokenizer):
        v = vectors(name, value)
        v = v.reshape(-1, v.shape[-1])
        return tok.encode(v), v, "vector"
    from ..tokenizers.ml4m.folder import official_tokenizer_types  # the released 4M tokenizers

    if isinstance(tok, official_tokenizer_types()):
        from .official_values import release_condition  # that module reads images with this one's helpers

        return release_condition(name, mod, tok, value, resize=resize, notify=notify)
    raise PipelineError(f"{name}: no tokenizer for these image tokens in this pipeline; give token ids (B, "
                        f"{mod.num_tokens}) as an integer tensor, or use a bundle that holds its tokenizer")
