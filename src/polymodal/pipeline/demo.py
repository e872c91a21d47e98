"""`polymodal demo`: held-out world scenes (or a user image) through a bundle: RGB -> every modality, caption -> RGB,
boxes -> RGB; a PNG figure and a self-contained HTML page (images inlined as base64 PNG) beside the ground truth.

Scenes come from world seed `DEMO_WORLD_SEED` (1), rendered in memory: training data is rendered with seed 0, so
these are held out. The X -> RGB chains are `generation.preset`'s ``caption_to_all`` / ``det_to_all`` cut after the
RGB tokens (`plans.preset_plan`); RGB -> all is ``rgb_to_all``. One generate call per task, batched over scenes.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..data.world import render_sample
from ..data.world.values import KINDS as WORLD_KINDS
from ..data.world.values import batch_values
from ..viz import save_png, tile_grid
from ..viz.decode import base_name
from ..viz.pictures import format_metadata
from .bundle import Pipeline
from .inputs import PipelineError
from .outputs import Outputs, check_out, tile

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "default"
DEMO_WORLD_SEED = 1
DEMO_MAX_TOKENS = 128
HOW_TO_MAKE = (
    "the default model is missing from this checkout (it lives at {path}; `bash scripts/train_default.sh` "
    "remakes it, ~4 h on 2 CPU cores). Pass any pipeline bundle with --model DIR; a bundle is made from a trained "
    "FourM and its tokenizers with `polymodal bundle --model RUN/release --tokenizer TOK_DIR ... --text-tokenizer "
    "TEXT_DIR --out DIR`")


@dataclass
class DemoResult:
    figure: Path
    html: Path
    seconds: float
    tasks: dict[str, Outputs] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def default_model(model: str | Path | None) -> Path:
    """``model``, or the shipped default model when None (a `PipelineError` saying how to make it if absent)."""
    if model is not None:
        return Path(model)
    if not DEFAULT_MODEL.exists():
        raise PipelineError(HOW_TO_MAKE.format(path=DEFAULT_MODEL))
    return DEFAULT_MODEL


def load_demo_pipeline(model: str | Path | None, device: str = "cpu", *, text_tokenizer: str | Path | None = None,
                       tokenizers=()) -> Pipeline:
    """``model`` (a bundle, folder or Hub repo id; a released 4M model with ``text_tokenizer`` and ``tokenizers``
    as `Pipeline.from_pretrained` takes them), or the shipped default model."""
    return Pipeline.from_pretrained(default_model(model), device=device, text_tokenizer=text_tokenizer,
                                    tokenizers=tokenizers)


def _rgb_side(pipe: Pipeline) -> int:
    name = pipe.resolve("rgb")
    mod = pipe.model.config.modality(name)
    if mod.image_size is not None:
        return mod.image_size[0]
    return pipe.tokenizers[name].cfg.image_size


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


Cell = tuple[str, Image.Image, str | None]  # (title, picture, the whole text of a caption or metadata, or None)


def _text(kind: str, value) -> str | None:
    """The text the HTML page shows instead of a picture (captions and metadata), None for other kinds."""
    if kind in ("caption", "text"):
        return str(value)
    if kind == "metadata":
        return format_metadata(value)
    return None


def _output_cells(out: Outputs, b: int, size: int) -> list[Cell]:
    """`Outputs.tiles` of sample ``b`` (inputs, then outputs, in that order) with their texts."""
    shown = [(n, v[b]) for n, v in out.inputs.items() if n in out.kinds] + [(n, v[b]) for n, v in out.values.items()]
    tiles = out.tiles(b, size=size, short=True)
    return [(title, img, _text(out.kinds[n], v)) for (title, img), (n, v) in zip(tiles, shown, strict=True)]


def _truth_cells(out: Outputs, truth: dict, b: int, size: int) -> list[Cell]:
    """The ground truth under each of ``out``'s outputs (a blank tile where the world has no such value)."""
    cells: list[Cell] = [("truth: rgb", tile("rgb", truth["rgb"][b], size), None)]
    for name in out.values:
        key = base_name(name)
        if key in truth:
            kind, value = WORLD_KINDS[key], truth[key][b]
            cells.append((f"truth: {key}", tile(kind, value, size, truth["rgb"][b]), _text(kind, value)))
        else:
            cells.append((f"truth: {key} (none)", Image.new("RGB", (size, size), (255, 255, 255)), None))
    return cells


def run_demo(model: str | Path | None = None, *, image: str | Path | None = None, out: str | Path = "demo",
             scenes: int = 2, seed: int = 0, size: int = 96, device: str = "cpu",
             notify: Callable[[str], None] = print, text_tokenizer: str | Path | None = None,
             tokenizers=()) -> DemoResult:
    """Run the three tasks and write ``out/demo.png`` and ``out/demo.html`` (see the module docstring)."""
    start = time.perf_counter()
    if image is None and scenes < 1:
        raise PipelineError(f"scenes: must be a whole number of at least 1, got {scenes}")
    check_out(out, "out")
    pipe = load_demo_pipeline(model, device, text_tokenizer=text_tokenizer, tokenizers=tokenizers)
    side = _rgb_side(pipe)
    if image is not None:
        truth = None
        rgb: object = [image]
    else:
        truth = batch_values([render_sample(DEMO_WORLD_SEED, i, side) for i in range(scenes)])
        rgb = truth["rgb"]
    tasks: dict[str, Outputs] = {}
    skipped: dict[str, str] = {}
    # World captions run to ~115 tokens and 10 boxes to ~60: a cap that a trained model never reaches, which keeps
    # an untrained (or confused) model from decoding every sequence to 256 tokens.
    to_all = pipe.plan(plan="rgb_to_all")
    to_all = dataclasses.replace(to_all, steps=tuple(
        dataclasses.replace(s, max_tokens=DEMO_MAX_TOKENS) if s.scheme == "autoregressive" else s
        for s in to_all.steps))
    tasks["RGB -> all"] = pipe.generate({"rgb": rgb}, plan=to_all, seed=seed, notify=notify)
    a = tasks["RGB -> all"]
    for title, key, preset in (("caption -> RGB", "caption", "caption_to_all"), ("boxes -> RGB", "det", "det_to_all")):
        try:
            if truth is not None:
                cond = truth[key]
            else:  # a user image: condition on what the model said about it
                cond = a.values[pipe.resolve(key, output=True)]
            plan = pipe.plan(plan=preset, until="rgb")
            tasks[title] = pipe.generate({key: cond}, plan=plan, seed=seed, notify=notify)
        except (PipelineError, KeyError) as e:
            skipped[title] = str(e)
    rows, sections = [], []
    for b in range(len(a)):
        scene_rows = []
        for title, res in tasks.items():
            scene_rows.append((title, _output_cells(res, b, size)))
            if title == "RGB -> all" and truth is not None:
                scene_rows.append(("ground truth", _truth_cells(res, truth, b, size)))
        rows += [[(t, img) for t, img, _ in cells] for _, cells in scene_rows]
        sections.append(scene_rows)
    out = Path(out)
    figure = save_png(tile_grid(rows, tile=size), out / "demo.png")
    page = _html(sections, skipped, image is None)
    path = out / "demo.html"
    path.write_text(page)
    return DemoResult(figure, path, time.perf_counter() - start, tasks, skipped)


def _html(sections, skipped: dict[str, str], world: bool) -> str:
    source = (f"held-out world scenes (world seed {DEMO_WORLD_SEED}; training uses seed 0)" if world
              else "your image")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>polymodal demo</title><style>",
             "body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;margin:3px;text-align:center;"
             "vertical-align:top}"
             "figcaption{font-size:11px;max-width:128px;overflow-wrap:anywhere}img{image-rendering:pixelated;"
             "width:128px;height:128px;border:1px solid #ccc}.row{margin:6px 0}.label{font-weight:bold;"
             "display:inline-block;width:120px;vertical-align:top}.text{width:200px;"
             "min-height:128px;border:1px solid #ccc;font-size:12px;text-align:left;white-space:pre-wrap;"
             "overflow-wrap:anywhere;padding:2px}", "</style></head><body>",
             f"<h1>polymodal demo</h1><p>Inputs (<code>in:</code>) and outputs (<code>out:</code>) side by side; "
             f"source: {html.escape(source)}.</p>"]
    for k, scene_rows in enumerate(sections):
        parts.append(f"<h2>Scene {k}</h2>")
        for title, cells in scene_rows:
            figs = "".join(_figure(*cell) for cell in cells)
            parts.append(f"<div class='row'><span class='label'>{html.escape(title)}</span>{figs}</div>")
    for title, why in skipped.items():
        parts.append(f"<p>Skipped {html.escape(title)}: {html.escape(why)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure(title: str, img: Image.Image, text: str | None) -> str:
    """One cell of the page: a caption or metadata as its whole text, anything else as its picture."""
    shown = (f"<div class='text'>{html.escape(text)}</div>" if text is not None
             else f"<img alt='{html.escape(title)}' src='data:image/png;base64,{_png_b64(img)}'>")
    return f"<figure>{shown}<figcaption>{html.escape(title)}</figcaption></figure>"
