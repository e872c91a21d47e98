"""Pseudo-labeling real images: a folder of image files (JPEG, PNG, WebP, TIFF, BMP, GIF) -> a polymodal dataset
(WebDataset shards).

    polymodal data label --images photos/ --out data/photos --labelers canny palette metadata --res 224
    polymodal data import --images photos/ --out data/photos_rgb          # RGB only: no labelers

Every image (searched recursively, sorted by path) is decoded with Pillow, turned upright (EXIF), converted to
8-bit RGB (gray, palette, alpha, CMYK and 16-bit images are converted; 16-bit values are scaled down), resized so
its shorter side is ``res`` and centre-cropped to ``res`` x ``res``; the labelers (`base`, `hf`) then label that
stored image, so every modality is aligned with it. Images smaller than ``MIN_SIDE`` pixels are refused.

A corrupt or truncated image is skipped and counted, the run goes on, and ``report.json`` lists every skipped file
with the reason at the end (also what a labeler failed on: that sample lacks the modality). Shards are written
atomically, ``dataset.json`` records what each finished shard holds, and a rerun resumes (same arguments).
Each sample holds ``rgb``, ``file`` (its path below the image folder) and the labelers' fields; ``dataset.json``
records every labeler's name and version.

Human poses: not here. mediapipe (the offline pose estimator one would use) resolves beside our numpy 2, but it
installs ``opencv-contrib-python`` 5, a second ``cv2`` that replaces the headless OpenCV 4 the project pins (the
Canny labeler and the world's codec use its classic API), plus audio packages; and its pose models are ``.task``
files fetched at run time, which an offline machine cannot do. A pose labeler can join through `hf` once a
transformers pose model (e.g. ViTPose) is chosen.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from ..images import DECODE_SIDE, IMAGE_SUFFIXES, ImageFileError, open_image
from ..shards import add_member, atomic_tar, npy_bytes, worker_pool
from ..world import codec
from .base import OFFLINE, build_labelers

FORMAT, VERSION = "polymodal-dataset", 1
MIN_SIDE = 16

__all__ = ["OFFLINE", "build_labelers", "label_images", "load_image", "ImageRefused"]


class ImageRefused(ValueError):
    """An image that cannot be used (corrupt, truncated, too small); the message names the file."""


def load_image(path: str | os.PathLike, res: int) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (res, res, 3) RGB of an image file and its original (H, W); `ImageRefused` naming the file. Opened
    as everywhere a person's image is (`data.images.open_image`: 16-bit and transparency converted by value, the
    EXIF orientation applied, large files decoded at reduced size or refused over the pixel limit)."""
    try:
        im, (w, h) = open_image(path, mode="RGB", min_side=max(DECODE_SIDE, res), name="the image")
    except ImageFileError as e:
        raise ImageRefused(f"{path}: {e}") from None
    rgb = np.asarray(im, dtype=np.uint8)
    if min(h, w) < MIN_SIDE:
        raise ImageRefused(f"{path}: {w}x{h} pixels is smaller than {MIN_SIDE} on a side")
    dh, dw = rgb.shape[:2]  # as decoded: smaller than (h, w) for a large file
    s = res / min(dh, dw)
    nh, nw = max(res, round(dh * s)), max(res, round(dw * s))
    rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    top, left = (nh - res) // 2, (nw - res) // 2
    return np.ascontiguousarray(rgb[top:top + res, left:left + res]), (h, w)


def _encode(field: str, value) -> tuple[str, bytes]:
    if field in codec.EXTENSIONS:
        return codec.EXTENSIONS[field], codec.encode(field, value)
    if isinstance(value, np.ndarray):
        return "npy", npy_bytes(value)
    if isinstance(value, str):
        return "txt", value.encode("utf-8")
    return "json", json.dumps(value, sort_keys=True).encode("utf-8")


_WORKER: dict = {}


def _label_shard(args: tuple) -> tuple[str, int, list[dict]]:
    root, files, start, out, name, res, names, models = args
    if _WORKER.get("key") != (names, models):
        import torch

        torch.set_num_threads(1)  # one thread per worker process
        _WORKER.update(key=(names, models), labelers=build_labelers(names, dict(models)))
    labelers = _WORKER["labelers"]
    n, skipped = 0, []
    with atomic_tar(Path(out) / name) as tar:
        for i, rel in enumerate(files):
            key = f"{start + i:08d}"
            try:
                rgb, size = load_image(Path(root) / rel, res)
            except ImageRefused as e:
                skipped.append({"file": rel, "reason": str(e)})
                continue
            sample = {"rgb": rgb, "file": rel}
            for lab in labelers:
                try:
                    kw = {"original_size": size} if lab.name == "metadata" else {}
                    sample.update(lab(rgb, key=key, **kw))
                except Exception as e:  # noqa: BLE001 - a model failing on one image must not stop the run
                    skipped.append({"file": rel, "labeler": lab.name, "reason": f"{type(e).__name__}: {e}"})
            for field, value in sample.items():
                ext, data = _encode(field, value)
                add_member(tar, f"{key}.{field}.{ext}", data)
            n += 1
    return name, n, skipped


def label_images(images: str | os.PathLike, out: str | os.PathLike, *, labelers=(), res: int = 224,
                 workers: int = 1, shard_size: int = 500, models: dict[str, str] | None = None,
                 progress: bool = False) -> dict:
    """Label (or, with no labelers, import) every image under ``images`` into the dataset folder ``out``.

    Returns ``dataset.json`` with ``count`` (samples written) and ``skipped`` (images refused); ``report.json``
    lists the refused files and labeler failures.
    """
    root, out = Path(images), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    # Images are decoded at a short side of DECODE_SIDE at most: a larger res would only upscale (100000 px asked
    # OpenCV for 30 GB).
    if not MIN_SIDE <= res <= DECODE_SIDE or workers < 1 or shard_size < 1:
        raise ValueError(f"need res from {MIN_SIDE} to {DECODE_SIDE}, workers >= 1, shard_size >= 1 (got {res}, "
                         f"{workers}, {shard_size})")
    names, models = tuple(labelers), tuple(sorted((models or {}).items()))
    built = build_labelers(names, dict(models))  # fails early on a bad name or model; records versions
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {root}")
    out.mkdir(parents=True, exist_ok=True)
    chunks = [files[a:a + shard_size] for a in range(0, len(files), shard_size)]
    shards = [f"shard-{j:06d}.tar" for j in range(len(chunks))]
    fields = ["rgb", "file", *[f for lab in built for f in lab.outputs]]
    info = {"format": FORMAT, "version": VERSION, "source": str(root), "resolution": res, "files": len(files),
            "shard_size": shard_size, "shards": shards,
            "labelers": [lab.info() if hasattr(lab, "info") else {"name": lab.name, "version": lab.version,
                                                                  "outputs": list(lab.outputs)} for lab in built],
            "modalities": {f: f"{f}.{codec.EXTENSIONS.get(f, 'npy')}" for f in fields}}
    info_path = out / "dataset.json"
    old = json.loads(info_path.read_text()) if info_path.exists() else {}
    if old and any(old.get(k) != info[k] for k in ("resolution", "shards", "labelers", "files")):
        raise ValueError(f"{out} holds a dataset made with other images or settings; use another folder")
    done = dict(old.get("done", {}))
    for stale in out.glob("shard-*.tar.tmp-*"):
        stale.unlink()

    def save(complete: bool) -> None:
        tmp = info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**info, "done": done, "complete": complete}, indent=1) + "\n")
        os.replace(tmp, info_path)

    save(False)
    todo = [(str(root), c, j * shard_size, str(out), s, res, names, models)
            for j, (c, s) in enumerate(zip(chunks, shards)) if not ((out / s).exists() and s in done)]
    pool = worker_pool(workers, len(todo))
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(files), initial=sum(len(c) for c, s in zip(chunks, shards) if s in done),
                       unit="image", desc="label")
        for name, n, skipped in (pool.imap_unordered(_label_shard, todo) if pool else map(_label_shard, todo)):
            done[name] = {"count": n, "skipped": skipped}
            save(False)
            if bar is not None:
                bar.update(len(chunks[shards.index(name)]))
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    problems = [p for s in shards for p in done[s]["skipped"]]
    refused = [p for p in problems if "labeler" not in p]
    info.update(count=sum(done[s]["count"] for s in shards), skipped=len(refused))
    (out / "report.json").write_text(json.dumps({"images": len(files), "written": info["count"],
                                                 "skipped": refused,
                                                 "labeler_failures": [p for p in problems if "labeler" in p]},
                                                indent=1) + "\n")
    save(True)
    return {**info, "done": done, "complete": True}
