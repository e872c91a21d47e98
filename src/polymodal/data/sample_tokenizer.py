"""The tokenizers of a dataset's keys: which key each may tokenize (`check_fit`), and one sample's tokens per crop
(`SampleTokenizer`), the unit of work of `data.pretokenize`.

For every sample, ``crops`` crop settings are drawn (`crops_for`: the centre crop, then random resized crops with a
flip, seeded by ``(seed, sample key, k)``); image modalities are tokenized per crop, a vector once for all crops,
``det`` boxes cropped with the image, other sequences once. Ids are int16, sequences padded with [PAD] = 0.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

from .. import modalities
from ..modalities import to_spec
from .readers import INFO_FILE
from .transforms import Crop, apply_crop, center_crop, image_size, random_resized_crop

SERIALIZED = ("det", "metadata", "color_palette")  # world-format values with a serializer; caption is plain text
# What a dataset key holds, as tokenizers see it: the ``values`` of an image tokenizer (`VQVAEConfig.values`),
# "vector" (an MLP tokenizer's input) or "text" (the text tokenizer's, through a serializer but for caption).
# Keys of the world, of `polymodal data label` and of 4M's feature maps and global embeddings.
KEY_VALUES = {"rgb": "rgb", "depth": "depth", "normal": "normal", "semseg": "semseg", "canny_edge": "edge",
              "sam_edge": "edge", "clip": "feature", "dinov2": "feature", "imagebind": "feature",
              **dict.fromkeys(("minilm_global", "dinov2_global", "imagebind_global", "hf_feature"), "vector"),
              "caption": "text", **dict.fromkeys(SERIALIZED, "text")}


def crops_for(key: str, h: int, w: int, n: int, seed: int) -> list[Crop]:
    """``n`` crop settings of sample ``key``: the centre crop, then random resized crops with flips."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return [center_crop(h, w)] + [random_resized_crop(h, w, rng) for _ in range(n - 1)]


def _image_tensor(values: list[np.ndarray], kind: str) -> torch.Tensor:
    x = torch.from_numpy(np.stack(values))
    if x.ndim == 4:  # (B, H, W, C) -> (B, C, H, W)
        x = x.permute(0, 3, 1, 2).contiguous()
    if kind == "semseg":
        return x.long()
    return x if x.dtype == torch.uint8 else x.float()


def tokenizer_values(tok) -> str:
    """What a tokenizer encodes: an image tokenizer's ``values`` (rgb, depth, ...; "image" when its config does not
    say), "vector" (an MLP tokenizer), "text" (a text tokenizer), "" (none of these)."""
    cfg = getattr(tok, "cfg", None)
    if hasattr(cfg, "image_size"):
        return str(getattr(cfg, "values", "image"))
    if hasattr(cfg, "in_dim"):
        return "vector"
    return "text" if hasattr(tok, "encode_lists") else ""


def _described(values: str, tok=None) -> str:
    what = {"vector": "vectors", "text": "text", "": "values no tokenizer here reads"}.get(values, f"{values} images")
    if tok is None:
        return what
    cfg = getattr(tok, "cfg", None)
    if values == "vector":
        size = f" of {_width(tok)}" if _width(tok) else ""
    else:
        size = f", {cfg.image_size} px" if hasattr(cfg, "image_size") else ""
    name = f"{cfg.name}, " if getattr(cfg, "name", "") else ""
    return f"{what}{size} ({name}{type(tok).__name__})"


def _width(tok) -> int | None:
    """The width of the vectors a vector tokenizer reads (ours: ``in_dim``; the released 4M ones: ``in_channels``)."""
    cfg = getattr(tok, "cfg", None)
    return getattr(cfg, "in_dim", None) or getattr(cfg, "in_channels", None)


def dataset_keys(dataset: str) -> list[str] | None:
    """The keys a dataset declares (its ``dataset.json``'s modalities, or a folder tree's sub-folders); None for
    shards named by a glob or braces, which declare nothing."""
    path = Path(str(dataset))
    if not path.is_dir():
        return None
    if (path / INFO_FILE).is_file():
        try:
            mods = json.loads((path / INFO_FILE).read_text()).get("modalities")
        except (ValueError, AttributeError):
            return None
        return list(mods) if isinstance(mods, (dict, list)) else None
    if any(path.glob("*.tar")):
        return None
    return sorted(p.name for p in path.iterdir() if p.is_dir())


class SampleTokenizer:
    """Tokenizes one sample's crops with the tokenizers of ``{dataset key: tokenizer folder}`` (`check` says
    whether they fit the dataset's keys, `probe` whether they read its values)."""

    def __init__(self, tokenizers: dict[str, str], *, crops: int, seed: int, size: int | None = None):
        from ..tokenizers import load_tokenizer

        self.tok = {k: load_tokenizer(p) for k, p in tokenizers.items()}
        self.crops, self.seed = crops, seed
        values = {k: tokenizer_values(t) for k, t in self.tok.items()}
        self.vector = {k: t for k, t in self.tok.items() if values[k] == "vector"}
        self.text = {k: t for k, t in self.tok.items() if values[k] == "text"}
        self.image = {k: t for k, t in self.tok.items() if k not in self.vector and k not in self.text}
        big = [k for k, t in self.tok.items() if t.vocab_size > np.iinfo(np.int16).max + 1]
        if big:
            raise ValueError(f"tokens are stored as int16: the vocabularies of {big} are larger than 32768")
        sizes = [t.cfg.image_size for t in self.image.values()]
        self.size = size or (max(sizes) if sizes else 224)

    def modalities(self) -> dict[str, dict]:
        """What ``tokens.json`` records of every stored modality."""
        out = {}
        for key, tok in self.image.items():
            out[tok.cfg.name] = {"source": key, "spec": to_spec(tok.modality), "tokenizer": type(tok).__name__}
        for key, tok in self.vector.items():
            out[tok.cfg.name] = {"source": key, "spec": to_spec(tok.modality), "tokenizer": type(tok).__name__}
        for key, tok in self.text.items():
            spec = to_spec(modalities.get(key).replace(vocab_size=tok.vocab_size))
            out[key] = {"source": key, "spec": spec, "tokenizer": type(tok).__name__}
        return out

    @torch.no_grad()
    def __call__(self, sample: dict, *, only: str | None = None) -> dict[str, np.ndarray]:
        """``{entry: (crops, T) int16 ids}`` of every key the sample holds (``only``: of that key alone)."""
        key = str(sample["__key__"])
        h, w = image_size(sample)
        crops = crops_for(key, h, w, self.crops, self.seed)
        out = {"crops": np.stack([c.as_array() for c in crops])}
        for k, tok in self.image.items():
            if k in sample and only in (None, k):
                views = [apply_crop({k: sample[k]}, c, tok.cfg.image_size)[k] for c in crops]
                out[tok.cfg.name] = tok.encode(_image_tensor(views, tok.cfg.values)).numpy().astype(np.int16)
        for k, tok in self.vector.items():  # a vector describes the whole image: the same ids for every crop
            if k in sample and only in (None, k):
                ids = tok.encode(torch.as_tensor(np.asarray(sample[k], dtype=np.float32)).reshape(1, -1))
                out[tok.cfg.name] = np.repeat(ids.numpy().astype(np.int16), len(crops), axis=0)
        for k, tok in self.text.items():
            if k not in sample or only not in (None, k):
                continue
            if k in ("det",):  # boxes move with the crop
                rows = [self._serialize(k, apply_crop({k: sample[k]}, c, self.size)[k], tok) for c in crops]
            else:
                rows = [self._serialize(k, sample[k], tok)] * len(crops)
            width = max(len(r) for r in rows)
            arr = np.zeros((len(crops), max(width, 1)), dtype=np.int16)  # [PAD] = 0
            for i, r in enumerate(rows):
                arr[i, :len(r)] = r
            out[k] = arr
        return out

    def check(self, folders: dict[str, str], keys: list[str] | None) -> None:
        """`check_fit` of every key (``folders``: as the user named them; ``keys``: the dataset's, if it says)."""
        for k, tok in self.tok.items():
            check_fit(k, tok, folders[k], keys)

    def probe(self, sample: dict, folders: dict[str, str]) -> None:
        """Tokenize ``sample`` key by key (a dataset's first): a tokenizer that cannot read the dataset's values
        (channels, classes, widths the config check cannot see) fails here, before any shard is written."""
        for k in self.tok:
            if k not in sample:
                continue
            try:
                self(sample, only=k)
            except ValueError as e:
                raise ValueError(f"--tokenizer {k}={folders[k]} does not fit the dataset's {k} (sample "
                                 f"{sample.get('__key__')}: {e})") from None

    def _serialize(self, key: str, value, tok) -> list[int]:
        limit = modalities.get(key).max_length
        if key == "caption":
            return tok.encode_lists([value], max_length=limit)[0]
        from ..tokenizers import serializers as S

        adapted = {"det": lambda v: S.boxes_from_world(v, self.size), "metadata": S.metadata_from_world,
                   "color_palette": S.palette_from_world}[key](value)
        return S.SERIALIZERS[key].encode(adapted, tok, max_tokens=limit)


def check_fit(key: str, tok, folder: str, keys: list[str] | None = None) -> None:
    """A ValueError unless ``key`` names a modality (a known dataset key or registered base name, and one of the
    dataset's ``keys`` when it declares them) and ``tok`` reads what it holds: an image tokenizer of the key's
    values (`KEY_VALUES`), an MLP tokenizer of the vector's width, the text tokenizer for caption and the
    serialized keys. The message names the key, the folder and what it holds."""
    arg = f"--tokenizer {key}={folder}"
    known = set(KEY_VALUES) | {_base(n) for n in modalities.all_modalities()}
    if keys is not None and key not in keys:
        where = "names no modality" if key not in known else "is a modality this dataset does not hold"
        raise ValueError(f"{arg}: {key!r} {where} (the dataset holds: {', '.join(keys)})")
    if keys is None and key not in known:
        raise ValueError(f"{arg}: {key!r} names no modality (known: {', '.join(sorted(KEY_VALUES))})")
    values, want = tokenizer_values(tok), KEY_VALUES.get(key)
    if not values:
        raise ValueError(f"{arg}: a {type(tok).__name__}, which is no image, vector or text tokenizer")
    if want is None and modalities.is_registered(key) and modalities.get(key).kind is modalities.Kind.SEQUENCE_EMB:
        want = "vector"
    if want is None:  # a key of the dataset's own: the probe of its first sample checks the tokenizer
        if values == "text":
            raise ValueError(f"{arg}: no way to tokenize {key!r} with a text tokenizer (caption and "
                             f"{', '.join(SERIALIZED)})")
        return
    if values != want and not (values == "image" and want not in ("vector", "text")):
        raise ValueError(f"{arg}: a tokenizer of {_described(values, tok)}, but {key} holds {_described(want)}")
    dim = modalities.get(key).emb_dim if modalities.is_registered(key) else None
    if values == "vector" and dim is not None and _width(tok) not in (None, dim):
        raise ValueError(f"{arg}: a tokenizer of {_described(values, tok)}, but {key} holds vectors of {dim}")


def _base(name: str) -> str:
    return name.removeprefix("tok_").split("@")[0]

