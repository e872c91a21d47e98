"""What `Pipeline.generate` returns: ids, decoded values, a picture grid, and files.

``Outputs.save(out_dir)`` writes, per target (``@`` in names becomes ``_``: ``tok_depth@64`` -> ``tok_depth_64``;
with a batch of B > 1, one folder ``sample_<b>/`` per sample):

=================================================  =========================================================
value kind                                         file
=================================================  =========================================================
rgb, depth, normal, semseg, edge, feature          ``<name>.png`` (its picture: depth viridis, normals as RGB,
                                                   classes with a palette); raw values in ``values.safetensors``
image tokens without a tokenizer ("tokens")        ``<name>.png`` (the ids as a colour grid); ids in
                                                   ``tokens.safetensors``
vector (global embeddings)                         ``<name>.json`` (a list of floats)
det, metadata, color_palette, human_poses,         ``<name>.json``: boxes ``[{"class", "box": [x0, y0, x1, y1]}]``
sam_instance                                       normalized 0..1 (readable back as a ``det`` input), dicts, lists
caption, text                                      ``<name>.txt``
=================================================  =========================================================

plus, in ``out_dir``, ``tokens.safetensors`` (one (B, N) ids tensor per target, keyed by its name),
``values.safetensors`` (raw decoded image values, key ``<name>``, or ``<name>/<b>`` in a batch) and ``grid.png``
(one row per sample: inputs, then outputs). No pickles, no NPY.

A released 4M model's outputs (``record_pictures``, `pipeline.official`) add their kinds, and every output
gets a picture beside its data file:

=================================================  =========================================================
value kind                                         files
=================================================  =========================================================
relative_depth, coco_semseg                        ``<name>.png`` (coco_semseg with its legend; its classes
                                                   and their shares also in ``<name>.json``); raw values in
                                                   ``values.safetensors``
sam_masks                                          ``<name>.png`` (masks over the image), ``<name>.json``
                                                   (points, boxes, codes); the instance map in
                                                   ``values.safetensors``
smpl_poses                                         ``<name>.json`` (SMPL parameters per person), ``<name>.png``
det, metadata, color_palette, vector, caption ...  their file as above, and ``<name>.png``
=================================================  =========================================================
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save_file

from ..generation import Plan
from ..tokenizers.serializers import Box
from ..viz import colors, picture, save_png, tile_grid
from ..viz.official import SamInstances, semseg_classes
from .inputs import PipelineError

IMAGE_KINDS = ("rgb", "depth", "normal", "semseg", "edge", "feature", "tokens", "relative_depth", "coco_semseg")
JSON_KINDS = ("det", "metadata", "color_palette", "human_poses", "sam_instance", "vector", "sam_masks", "smpl_poses")
BACKGROUND_KINDS = ("det", "human_poses", "sam_instance", "sam_masks", "smpl_poses")


def safe_name(name: str) -> str:
    return name.replace("@", "_").replace("/", "_")


def tile(kind: str, value: Any, size: int, background=None) -> Image.Image:
    """A picture of one item of any kind, ``"tokens"`` (ids of a (rows, cols) grid, no tokenizer) included."""
    if kind == "tokens":
        ids = torch.as_tensor(value).float()
        return Image.fromarray(colors.colormap(ids.numpy(), lo=0.0, hi=float(ids.max()) + 1)).resize(
            (size, size), Image.NEAREST)
    bg = background if kind in BACKGROUND_KINDS else None
    return picture(kind, value, size=size, background=bg)


def jsonable(value: Any) -> Any:
    if isinstance(value, SamInstances):
        return value.record()
    if isinstance(value, Box):
        return {"class": value.label, "box": [round(float(c), 4) for c in value.coords]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return value.item()
    return value


@dataclass
class Outputs:
    """ids: target -> (B, N) image-token ids or (B, L) sequence ids ([PAD] after the text); values: target ->
    decoded batched value (tensors (B, ...) or lists of B; ids as (B, rows, cols) for image tokens without a
    tokenizer); kinds: name -> picture kind, for values and inputs; inputs: input name -> shown value (images
    0..1 before normalization, texts, boxes); plan: the plan that ran; notices: what was adjusted (resizes)."""

    ids: dict[str, torch.Tensor]
    values: dict[str, Any]
    kinds: dict[str, str]
    inputs: dict[str, Any] = field(default_factory=dict)
    plan: Plan | None = None
    notices: list[str] = field(default_factory=list)
    record_pictures: bool = False  # `save` also draws the kinds kept as JSON or text (a released model's outputs)

    def __len__(self) -> int:
        return next(iter(self.ids.values())).shape[0]

    def _background(self, b: int):
        for group in (self.inputs, self.values):
            for name, v in group.items():
                if self.kinds.get(name) == "rgb":
                    return _row(v, b)
        return None

    def tiles(self, b: int, *, size: int = 128, short: bool = False) -> list[tuple[str, Image.Image]]:
        """(title, picture) of sample ``b``: inputs (``in: name``), then outputs (``out: name``); ``short`` titles
        name the modality without prefix and resolution (``depth``, not ``tok_depth@64``)."""
        bg = self._background(b)
        label = (lambda n: n.removeprefix("tok_").split("@")[0]) if short else (lambda n: n)  # noqa: E731
        out = [(f"in: {label(n)}", tile(self.kinds[n], _row(v, b), size, bg)) for n, v in self.inputs.items()
               if n in self.kinds]
        return out + [(f"out: {label(n)}", tile(self.kinds[n], v[b], size, bg)) for n, v in self.values.items()]

    def grid(self, *, size: int = 128) -> Image.Image:
        """One row per sample: its inputs, then its outputs."""
        return tile_grid([self.tiles(b, size=size) for b in range(len(self))], tile=size)

    def save(self, out_dir: str | Path, *, size: int = 128) -> list[Path]:
        """Write every output as a file (see the module table), ``tokens.safetensors`` and ``grid.png``; returns
        the paths written."""
        out = check_out(out_dir, "out_dir")
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        raw: dict[str, torch.Tensor] = {}
        n = len(self)
        for b in range(n):
            folder = out if n == 1 else out / f"sample_{b}"
            folder.mkdir(parents=True, exist_ok=True)
            bg = self._background(b)
            for name, value in self.values.items():
                kind, item, stem = self.kinds[name], value[b], safe_name(name)
                key = name if n == 1 else f"{name}/{b}"
                if kind in IMAGE_KINDS:
                    side = max(size, int(item.shape[-1]) if isinstance(item, torch.Tensor) else size)
                    written.append(save_png(tile(kind, item, side, bg), folder / f"{stem}.png"))
                    if kind != "tokens":
                        raw[key] = torch.as_tensor(item).detach().cpu().contiguous()
                    if kind == "coco_semseg":
                        record = [{"label": k, "class": c, "share": round(f, 4)} for k, c, f in semseg_classes(item)]
                        written.append(_write_json(folder / f"{stem}.json", record))
                    continue
                if kind in JSON_KINDS:
                    written.append(_write_json(folder / f"{stem}.json", jsonable(item)))
                else:
                    path = folder / f"{stem}.txt"
                    path.write_text(str(item) + "\n")
                    written.append(path)
                if kind == "sam_masks":
                    raw[key] = item.ids.detach().cpu().contiguous()
                if self.record_pictures:
                    side = max(size, 224 if bg is None else int(colors.rgb_rgb(bg).shape[1]))
                    written.append(save_png(tile(kind, item, side, bg), folder / f"{stem}.png"))
        tokens = {k: v.detach().cpu().contiguous() for k, v in self.ids.items()}
        save_file(tokens, str(out / "tokens.safetensors"))
        written.append(out / "tokens.safetensors")
        if raw:
            save_file(raw, str(out / "values.safetensors"))
            written.append(out / "values.safetensors")
        written.append(save_png(self.grid(size=size), out / "grid.png"))
        return written


def _row(value: Any, b: int) -> Any:
    """Sample ``b`` of a shown input; an input given once beside a batch (generation repeats it) is every row's."""
    return value[b] if len(value) > 1 else value[0]


def check_out(path: str | Path, what: str = "out", *, file: str = "") -> Path:
    """``path`` as the place to write a folder (``file`` empty) or a file (``file`` names its kind: ".safetensors"),
    checked before any work rather than after it (``mkdir``'s bare "[Errno 17] File exists", a rename that fails
    once every image is embedded): a PipelineError naming ``what`` if a file stands where the folder goes, a
    folder where the file goes, or a file where a folder above ``path`` would be made. The one check of every
    command's --out (`pipeline`, `eval`, `cli`)."""
    path = Path(path)
    if path.exists() and path.is_dir() == bool(file):
        found, wanted = ("a folder", f"a {file} file") if file else ("a file", "a folder")
        raise PipelineError(f"{what} {path} is {found}, not {wanted}")
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                raise PipelineError(f"{what} {path}: {above} is a file, not a folder")
            break
    return path



def remember_sources(from_pretrained: Callable) -> Callable:
    """``Pipeline.from_pretrained`` that keeps, as ``pipe.sources``, the local folders and files it read (the model
    folder, ``text_tokenizer``, the ``tokenizers`` folders; a Hub id is not a local path), for
    `check_not_a_source` to refuse a save over them."""
    @functools.wraps(from_pretrained)
    def load(cls, path, **kwargs):
        pipe = from_pretrained(cls, path, **kwargs)
        toks = kwargs.get("tokenizers") or ()
        toks = list(toks.values()) if isinstance(toks, Mapping) else [str(t).partition("=")[2] or t for t in toks]
        given = [path, kwargs.get("text_tokenizer"), *toks]
        pipe.sources = tuple(Path(p).resolve() for p in given if p and Path(p).exists())
        return pipe
    return load


def check_not_a_source(pipe: Any, path: str | Path) -> Path:
    """``path`` as the folder to save ``pipe`` into; a PipelineError if it holds a folder or file ``pipe`` was
    loaded from (`remember_sources`): saving there rewrites the weights it reads (a bundle saved with ``half``
    over itself became float16 for good), or a failed save leaves neither copy whole."""
    path = Path(path)
    target = path.resolve()
    for source in getattr(pipe, "sources", ()):
        if source.is_relative_to(target):
            raise PipelineError(f"{path} holds {source}, which this pipeline was loaded from; save it to another "
                                "folder")
    return path


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
