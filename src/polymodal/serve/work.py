"""What the demo's jobs compute: generation with step progress, retrieval over a small world gallery, pictures.

`Pipeline.generate` runs a plan in one call; the page wants a step count while it runs, so `run_generate` walks
the same plan with `generation.generate_iter` (same conditions, plan and seed: the same ids as
``pipe.generate``; a test checks it). Results are JSON-ready: every input and output as a PNG data URL (the
pictures of `polymodal.viz`), captions, boxes and metadata also as text, and the zip of `Outputs.save`.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.world import render_sample
from ..data.world.values import world_values
from ..generation import generate_iter, initial_state
from ..modalities import Kind
from ..pipeline import Outputs, Pipeline, PipelineError
from ..pipeline.demo import DEMO_MAX_TOKENS, DEMO_WORLD_SEED
from ..pipeline.outputs import jsonable, tile
from ..retrieval import GalleryIndex, model_predictor, retrieve
from ..viz import picture
from ..viz.decode import base_name
from .jobs import Progress
from .requests import RequestError, Settings, conditions

TILE = 192  # pixels per picture on the page (nearest-neighbour upscaled: 64 px models show their pixels)
# Texts are shown as text (a picture of a caption is harder to read than the caption); boxes, palettes and poses
# as a picture with their JSON beside it; images and vectors as pictures only.
TEXT_ONLY = ("caption", "text", "metadata")
TEXT_KINDS = (*TEXT_ONLY, "det", "color_palette", "human_poses", "sam_instance")
GALLERY_SIZE = 48  # held-out world scenes (DEMO_WORLD_SEED, as `polymodal demo`; training renders seed 0)
RETRIEVAL_MODALITY = "tok_minilm_global"


def png_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def rgb_side(pipe: Pipeline) -> int:
    try:
        name = pipe.resolve("rgb")
    except PipelineError:
        return 64
    mod = pipe.model.config.modality(name)
    return mod.image_size[0] if mod.image_size is not None else pipe.tokenizers[name].cfg.image_size


def check_plan(pipe: Pipeline, values: dict, target_names: list[str], s: Settings):
    """(conditions, shown values, kinds, plan, notices); every `PipelineError`/`ValueError` becomes a 400 now,
    before the job waits in the queue for nothing. ``values`` are a request's `user_inputs`, turned into conditions
    by `requests.conditions` (values only: no string is read as a file)."""
    notices: list[str] = []
    try:
        pipe.plan(target_names)  # unknown targets fail before the inputs are read
        conds, shown, kinds = conditions(pipe, values, notify=notices.append)
        # steps/temperature None: an image target predicted from an image in one greedy step, else generated
        plan = pipe.plan(target_names, steps=s.steps, temperature=s.temperature, guidance=s.guidance,
                         given=list(conds))
        # A cap on text length as in `polymodal demo`: an untrained model would write 256 tokens every time.
        plan = dataclasses.replace(plan, steps=tuple(
            dataclasses.replace(st, max_tokens=min(st.max_tokens or DEMO_MAX_TOKENS, DEMO_MAX_TOKENS))
            if st.scheme == "autoregressive" else st for st in plan.steps))
        clash = [t for t in plan.targets if t in values and "[S_" not in str(values[t])]
        if clash:
            raise RequestError(f"{', '.join(map(_short, clash))}: given as input and asked as output; clear the "
                               "input to generate it, or untick the output (to fill in a text, write [S_1] where "
                               "words should go)")
        initial_state(pipe.model, conds, plan)  # shapes, steps per target, inputs asked back as outputs
    except ValueError as e:
        raise RequestError(str(e)) from None
    return conds, shown, kinds, plan, notices


def total_steps(pipe: Pipeline, plan) -> int:
    return sum(1 if st.scheme == "autoregressive" else
               len(st.schedules(pipe.model.config.modality(st.target).num_tokens)[0]) for st in plan.steps)


def run_generate(pipe: Pipeline, checked, seed: int, progress: Progress) -> Outputs:
    conds, shown, kinds, plan, notices = checked
    total, state = total_steps(pipe, plan), None
    progress(0, total, plan.steps[0].target)
    for r in generate_iter(pipe.model, conds, plan, seed=seed):
        state = r.state
        progress(r.index + 1, total, r.target)
    ids = {t: state[t].values for t in plan.targets}
    values, out_kinds = pipe.decode(ids)
    return Outputs(ids, values, kinds | out_kinds, inputs=shown, plan=plan, notices=notices)


def _text(kind: str, value: Any) -> str | None:
    if kind in ("caption", "text"):
        return str(value)
    if kind in TEXT_KINDS:
        return json.dumps(jsonable(value), indent=1)
    return None


def _short(name: str) -> str:
    return base_name(name)


def view(out: Outputs) -> dict:
    """The page's view of sample 0: inputs, then outputs, each {name, label, kind, png, text}."""
    bg = _background(out.inputs, out.kinds)
    bg = bg if bg is not None else _background(out.values, out.kinds)

    items = [(n, v) for n, v in out.inputs.items() if n in out.kinds]
    return {"inputs": [_item(n, out.kinds[n], v[0], bg) for n, v in items],
            "outputs": [_item(n, out.kinds[n], v[0], bg) for n, v in out.values.items()], "notices": out.notices}


def _background(values: dict, kinds: dict) -> Any:
    """The first RGB image of sample 0: boxes and poses are drawn over it, as in `Outputs.grid`."""
    return next((v[0] for n, v in values.items() if kinds.get(n) == "rgb"), None)


def _item(name: str, kind: str, value: Any, bg: Any) -> dict:
    """One tile of the page: {name, label, kind, png (None for texts), text (None for pictures)}."""
    png = None if kind in TEXT_ONLY else png_url(tile(kind, value, TILE, bg))
    return {"name": name, "label": _short(name), "kind": kind, "png": png, "text": _text(kind, value)}


def zip_bytes(out: Outputs) -> bytes:
    """`Outputs.save` into a temporary folder of the server's own naming, zipped in memory."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="polymodal-serve-") as tmp:
        paths = out.save(Path(tmp) / "outputs")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths:
                z.write(p, p.relative_to(tmp).as_posix())
    return buf.getvalue()


def world_sample(pipe: Pipeline, index: int) -> dict:
    """A held-out world scene as page inputs: the image (data URL), caption, boxes (normalized) and metadata."""
    side = rgb_side(pipe)
    v = world_values(render_sample(DEMO_WORLD_SEED, index, side), ("rgb", "caption", "det", "metadata"))
    img = Image.fromarray((v["rgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return {"index": index, "rgb": png_url(img), "caption": v["caption"], "det": jsonable(v["det"]),
            "metadata": jsonable(v["metadata"])}


def retrieval_unavailable(pipe: Pipeline) -> str:
    """Why retrieval cannot run with this model ("" when it can)."""
    if RETRIEVAL_MODALITY not in pipe.outputs or RETRIEVAL_MODALITY not in pipe.tokenizers:
        return (f"retrieval needs a model that outputs {RETRIEVAL_MODALITY} (with its tokenizer); this one outputs "
                f"{', '.join(map(_short, pipe.outputs))}")
    try:
        from ..data.world.text_embed import model_dir

        model_dir()
    except (ImportError, FileNotFoundError) as e:
        return f"the gallery's caption embeddings need the sentence encoder: {e}"
    return ""


class Gallery:
    """``GALLERY_SIZE`` held-out world scenes, searched by their captions' MiniLM embeddings (``minilm_global``).
    Built on first use (rendering and the encoder take seconds), in the worker thread."""

    def __init__(self, pipe: Pipeline, size: int = GALLERY_SIZE):
        from ..data.world import text_embed

        side, enc = rgb_side(pipe), text_embed.shared_encoder()
        self.samples = [render_sample(DEMO_WORLD_SEED, i, side) for i in range(size)]
        vectors = np.stack([enc.embed_caption(s["caption"])[0] for s in self.samples])
        self.index = GalleryIndex(torch.from_numpy(vectors), modality="minilm_global",
                                  source=f"world seed {DEMO_WORLD_SEED}, scenes 0-{size - 1}")

    def item(self, key: int, score: float) -> dict:
        s = self.samples[key]
        return {"key": key, "score": round(score, 4), "caption": s["caption"],
                "png": png_url(picture("rgb", s["rgb"], size=128))}


def run_retrieve(pipe: Pipeline, gallery_of, checked_conds: tuple, k: int, progress: Progress) -> dict:
    conds, shown, kinds = checked_conds
    progress(0, 2, "the gallery, built on first use")
    gallery = gallery_of()
    progress(1, 2, RETRIEVAL_MODALITY)
    predict = model_predictor(pipe.model, RETRIEVAL_MODALITY, steps=4)
    hits = retrieve(predict, gallery.index, conds, modality=RETRIEVAL_MODALITY, k=k,
                    tokenizer=pipe.tokenizers[RETRIEVAL_MODALITY]).hits
    progress(2, 2, "search")
    bg = _background(shown, kinds)
    query = [_item(n, kinds[n], v[0], bg) for n, v in shown.items() if n in kinds]
    matches = [gallery.item(int(key), float(s)) for key, s in zip(hits.keys[0], hits.scores[0].tolist())]
    return {"query": query, "matches": matches, "gallery": gallery.index.source}


def model_info(pipe: Pipeline) -> dict:
    """What the page builds its form from: which inputs and outputs this model has."""
    cfg = pipe.model.config
    inputs = {}
    for short in ("rgb", "caption", "det", "metadata"):
        try:
            inputs[short] = pipe.resolve(short)
        except PipelineError:
            pass
    outputs = [{"name": n, "label": _short(n), "kind": cfg.modality(n).kind.value} for n in pipe.outputs
               if cfg.modality(n).kind is not Kind.SEQUENCE_EMB]
    return {"inputs": inputs, "outputs": outputs, "retrieval": retrieval_unavailable(pipe) or "available",
            "side": rgb_side(pipe)}
