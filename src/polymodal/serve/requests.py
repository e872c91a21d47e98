"""Checking what a browser (or anyone on the port) sends, before a job is queued.

Every refusal is a `RequestError` with an HTTP status and one sentence that the page shows as it is.

Values, never paths: a request cannot make the server open a file, whatever field it fills. That is decided here,
once: every request's inputs become model conditions through `conditions`, which calls `Pipeline.prepare` with
``paths=False`` (no string of any modality is resolved as a path there). Before that, `user_inputs` takes images as
``data:`` URLs or bare base64 only (decoded in memory), boxes/metadata/palettes as JSON values or JSON text (never a
bare string: the pipeline's text form of them is not offered here), vectors as lists of finite numbers as wide
as the domain's tokenizer reads (`retrieval.captions.is_vector_domain`: an MLP tokenizer's domain, a released
model's ``tok_*_global``).

Bodies are parsed by `parse_json`: nesting deeper than ``MAX_DEPTH``, NaN/Infinity and numbers past ``MAX_NUMBER``
are refused, so nothing after it meets a value that recursion or float conversion cannot take.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..modalities import Kind
from ..pipeline import Pipeline, PipelineError
from ..pipeline.inputs import sequence_items
from ..pipeline.settings import SettingError
from ..pipeline.settings import check as check_setting
from ..retrieval.captions import is_vector_domain, vector_width
from ..viz.decode import base_name

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # an uploaded image file; the model sees 64-224 px, so this is generous
MAX_IMAGE_PIXELS = 4096 * 4096  # checked from the header before decoding (a small file can inflate)
MAX_BODY_BYTES = 8 * 1024 * 1024  # a whole request: the image in base64 (4/3 of its size) and the rest
# A real request nests 6 deep at most (body > inputs > det > a sample's boxes > a box > its coordinates).
MAX_DEPTH = 20
# A text input: the model reads at most 256 tokens (~1,500 characters of English); tokenizing a whole 8 MB body
# took ~8 s of the worker's time only to cut it there.
MAX_TEXT_CHARS = 20_000
MAX_NUMBER = 10**15  # far past any value a request holds (seeds < 2**31, pixel sizes, metadata counts)


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


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """JSON text -> a value whose nesting is at most ``MAX_DEPTH`` and whose numbers are finite and at most
    ``MAX_NUMBER`` in size; a `RequestError` (400) naming ``what`` otherwise. ``json.loads`` recurses per level:
    100k levels raise RecursionError inside it, caught here; the depth check after it keeps later walks safe."""
    def number(text: str) -> float:
        x = float(text)
        if not math.isfinite(x) or abs(x) > MAX_NUMBER:
            raise RequestError(f"{what}: the number {text:.30} is out of range (at most {MAX_NUMBER:.0e} in size)")
        return x

    def whole(text: str) -> int:
        # The length first: int() of 5000 digits is itself an error (Python's cap on digits).
        if len(text.lstrip("-")) > len(str(MAX_NUMBER)) or abs(int(text)) > MAX_NUMBER:
            raise RequestError(f"{what}: the number {text:.30} is out of range (at most {MAX_NUMBER:.0e} in size)")
        return int(text)

    def constant(text: str) -> None:
        raise RequestError(f"{what}: {text} is not a JSON number; send finite numbers")

    try:
        value = json.loads(raw, parse_float=number, parse_int=whole, parse_constant=constant)
    except RecursionError:
        raise RequestError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except RequestError:  # a number refused above (a ValueError too, so before the next line)
        raise
    except json.JSONDecodeError as e:
        raise RequestError(f"{what}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (UnicodeDecodeError, ValueError):  # bytes that are not UTF-8/16/32, an integer past Python's digit cap
        raise RequestError(f"{what}: not valid JSON") from None
    if nesting(value) > MAX_DEPTH:
        raise RequestError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def nesting(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (0 for a scalar), walked without recursion, stopping once past
    ``MAX_DEPTH``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                break
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _too_large(name: str, size: str) -> RequestError:
    side = math.isqrt(MAX_IMAGE_PIXELS)
    return RequestError(f"{name}: the image is {size}, over the limit of {side}x{side} pixels; send a smaller one",
                        413)


IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


def decode_image(name: str, data: Any) -> Image.Image:
    """A ``data:image/...;base64,...`` URL (or bare base64) -> an RGB PIL image, in memory, size-checked.

    A string is never a path here: anything that is not base64 is refused before a byte is decoded. The pixel limit
    is checked from the header, before any pixel is decoded; past twice Pillow's own limit (about 179M pixels)
    Pillow refuses at open (DecompressionBombError), which is the same answer: too large, not "not an image"."""
    if not isinstance(data, str):
        raise RequestError(f"{name}: send the image as a base64 data: URL, got {type(data).__name__}")
    if data.startswith("data:"):
        _, comma, payload = data.partition(",")
        if not comma:
            raise RequestError(f"{name}: the image is not a data: URL with its data after a comma "
                               "(data:image/png;base64,...)")
    else:
        payload = data
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        raise RequestError(f"{name}: the image file is over the size limit of {MAX_IMAGE_BYTES // 2**20} MB; "
                           "send a smaller one", 413)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name}: the image is not valid base64 data") from None
    not_an_image = RequestError(f"{name}: the file is not an image that can be read (use PNG, JPEG, GIF, BMP or "
                                "WebP)")
    try:
        # only the formats the message names: Pillow would also open TIFF, ICO, PSD, EPS (Ghostscript) ... whose
        # decoders a web request has no business reaching
        img = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(name, f"{int(pixels[1]):,} pixels" if pixels else "too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise not_an_image from None
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise _too_large(name, f"{w}x{h} pixels")
    try:
        img.load()
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise not_an_image from None


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


# What a structured sequence is sent as (the page's text boxes hold this JSON).
SHAPES = {"det": 'a JSON list of boxes {"class": ..., "box": [x0, y0, x1, y1]}',
          "metadata": "a JSON object of field -> number", "color_palette": "a JSON list of [r, g, b] colours"}


def _structured(name: str, base: str, v: Any) -> list | dict:
    """Boxes, metadata, palettes (and any other serialized sequence): a JSON list or object, or its JSON text.

    Never a bare string, nor a list of strings: the pipeline takes those as the modality's serialized text (and
    once took a ``.json`` string as a file to read), which a form never sends."""
    if isinstance(v, str):
        v = parse_json(v, name)
    if not isinstance(v, (list, dict)) or (isinstance(v, list) and any(isinstance(x, str) for x in v)):
        got = "a list of strings" if isinstance(v, list) else "a string" if isinstance(v, str) else type(v).__name__
        raise RequestError(f"{name}: send {SHAPES.get(base, 'a JSON list or object')}, got {got}")
    if len(sequence_items(name, v)) > 1:  # the page shows one sample; a batch would only make a longer job
        raise RequestError(f"{name}: send one sample's value (this looks like a batch of several)")
    return v


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
    keys: dict[str, str] = {}
    for key, v in given.items():
        try:
            name = pipe.resolve(str(key))
        except PipelineError as e:
            raise RequestError(str(e)) from None
        if name in keys:
            raise RequestError(f"{name}: given twice (as {keys[name]!r} and {key!r}); send it once")
        keys[name] = key
        mod, base = pipe.model.config.modality(name), base_name(name)
        if mod.kind is Kind.PIXELS or (mod.kind is Kind.IMAGE_TOKENS and base in ("rgb", "canny_edge", "sam_edge")):
            values[name] = decode_image(name, v)
        elif mod.kind is Kind.SEQUENCE:
            if base in ("caption", "text"):
                if not isinstance(v, str):
                    raise RequestError(f"{name}: must be text")
                if len(v) > MAX_TEXT_CHARS:
                    raise RequestError(f"{name}: the text is {len(v):,} characters, over the limit of "
                                       f"{MAX_TEXT_CHARS:,} (the model reads its first {mod.max_length} tokens)", 413)
                values[name] = v
            else:
                values[name] = _structured(name, base, v)
        elif mod.kind is Kind.SEQUENCE_EMB or is_vector_domain(pipe, name):
            values[name] = _vector(pipe, name, v)
        else:  # depth, normals, segmentation maps: a flat JSON list cannot hold a map, and files are not taken
            raise RequestError(f"{name}: this demo does not take it as an input (it takes images for rgb and edges, "
                               "texts, boxes, metadata, palettes, and vectors as lists of numbers)")
    return values


def _vector(pipe: Pipeline, name: str, v: Any) -> list:
    """A vector as a list of finite numbers, as wide as the domain's tokenizer reads (when it has one)."""
    if not (isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        raise RequestError(f"{name}: send a vector as a list of numbers")
    bad = sum(not math.isfinite(x) for x in v)
    if bad:
        raise RequestError(f"{name}: the vector holds {bad} NaN or infinite value(s); send finite numbers")
    if is_vector_domain(pipe, name):
        try:  # a released model's tokenizer loads here: the job needs it to encode the vector
            width = vector_width(pipe, name)
        except ValueError as e:  # not in the Hub cache, or a misfit: the server's setup, said in one line
            raise RequestError(str(e)) from None
        if len(v) != width:
            raise RequestError(f"{name}: send a vector of {width} numbers, got {len(v)}")
    return v


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


def conditions(pipe: Pipeline, values: dict[str, Any], *,
               notify: Callable[[str], None] | None = None) -> tuple[dict, dict, dict]:
    """`Pipeline.prepare` of a request's `user_inputs`, values only (``paths=False``): the one way a request's
    inputs reach the model, so no field of any modality is ever resolved as a path on the server."""
    try:
        return pipe.prepare(values, notify=notify, paths=False)
    except ValueError as e:  # PipelineError and the like: the request's values, named
        raise RequestError(str(e)) from None
