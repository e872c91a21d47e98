"""Checking what a browser (or anyone on the port) sends, before a job is queued.

Every refusal is a `RequestError` with an HTTP status and one sentence that the page shows as it is. Values
from a request never name files: images arrive as ``data:`` URLs (base64) and are decoded in memory, and texts
that the pipeline would read as a path (``det``/``metadata`` ending in ``.json``) are parsed as JSON here first,
so a crafted request cannot make the server read its own files.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..modalities import Kind
from ..pipeline import Pipeline, PipelineError
from ..pipeline.settings import SettingError
from ..pipeline.settings import check as check_setting
from ..viz.decode import base_name

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # an uploaded image file; the model sees 64-224 px, so this is generous
MAX_IMAGE_PIXELS = 4096 * 4096  # checked from the header before decoding (a small file can inflate)
MAX_BODY_BYTES = 8 * 1024 * 1024  # a whole request: the image in base64 (4/3 of its size) and the rest


class RequestError(ValueError):
    """A request the server refuses: ``status`` (400, 413, ...) and a message for a person."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    steps: int | None = None  # None: per target (`pipeline.plans.targets_plan`)
    temperature: float | None = None
    guidance: float = 1.0
    seed: int = 0


def decode_image(name: str, data: Any) -> Image.Image:
    """A ``data:image/...;base64,...`` URL (or bare base64) -> an RGB PIL image, in memory, size-checked."""
    if not isinstance(data, str):
        raise RequestError(f"{name}: send the image as a base64 data: URL, got {type(data).__name__}")
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        raise RequestError(f"{name}: the image file is over the size limit of {MAX_IMAGE_BYTES // 2**20} MB; "
                           "send a smaller one", 413)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name}: the image is not valid base64 data") from None
    try:
        img = Image.open(io.BytesIO(raw))
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise RequestError(f"{name}: the image is {w}x{h} pixels, over the limit of "
                               f"{int(math.sqrt(MAX_IMAGE_PIXELS))}x{int(math.sqrt(MAX_IMAGE_PIXELS))}", 413)
        img.load()
        return img.convert("RGB")
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise RequestError(f"{name}: the file is not an image that can be read (use PNG, JPEG, GIF, BMP or "
                           "WebP)") from None


def _number(body: dict, key: str, default: Any) -> Any:
    """Setting ``key`` of the request by the one rule of `pipeline.settings` (the command line's too); absent,
    null or "" (the page's "auto") is ``default``."""
    v = body.get(key, default)
    if v is None or v == "":
        return default
    try:
        return check_setting(key, v)
    except SettingError as e:
        raise RequestError(str(e)) from None


def settings(body: dict) -> Settings:
    d = Settings()
    return Settings(steps=_number(body, "steps", d.steps), temperature=_number(body, "temperature", d.temperature),
                    guidance=_number(body, "guidance", d.guidance), seed=_number(body, "seed", d.seed))


def top_k(body: dict) -> int:
    return _number(body, "k", 5)


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, dict)) and not v)


def user_inputs(pipe: Pipeline, body: Any) -> dict[str, Any]:
    """The request's ``inputs`` as pipeline values by model domain (images decoded, JSON parsed)."""
    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    raw = body.get("inputs", {})
    if not isinstance(raw, dict):
        raise RequestError("inputs: must be an object of modality -> value")
    given = {k: v for k, v in raw.items() if not _empty(v)}
    if not given:
        raise RequestError("empty request: give at least one input (an image, a caption, boxes or metadata)")
    values: dict[str, Any] = {}
    for key, v in given.items():
        try:
            name = pipe.resolve(str(key))
        except PipelineError as e:
            raise RequestError(str(e)) from None
        mod, base = pipe.model.config.modality(name), base_name(name)
        if mod.kind is Kind.PIXELS or (mod.kind is Kind.IMAGE_TOKENS and base in ("rgb", "canny_edge", "sam_edge")):
            values[name] = decode_image(name, v)
        elif mod.kind is Kind.SEQUENCE:
            if base not in ("caption", "text") and isinstance(v, str):
                try:  # parsed here: the pipeline would take a string ending in .json for a file path
                    v = json.loads(v)
                except json.JSONDecodeError as e:
                    raise RequestError(f"{name}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") \
                        from None
            elif base in ("caption", "text") and not isinstance(v, str):
                raise RequestError(f"{name}: must be text")
            values[name] = v
        elif isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            values[name] = v
        else:
            raise RequestError(f"{name}: this demo takes it as a list of numbers only")
    return values


def targets(pipe: Pipeline, body: dict) -> list[str]:
    raw = body.get("targets")
    if isinstance(raw, str):
        raw = [t.strip() for t in raw.split(",") if t.strip()]
    if not raw:
        raise RequestError("choose at least one output to generate")
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise RequestError("targets: must be a list of modality names")
    try:
        names = [pipe.resolve(t, output=True) for t in raw]
    except PipelineError as e:
        raise RequestError(str(e)) from None
    return list(dict.fromkeys(names))
