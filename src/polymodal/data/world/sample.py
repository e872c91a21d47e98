"""One sample of the world: every modality of scene ``(seed, index)`` at one resolution.

`render_sample` is the world's single entry point for data: the shard writer, the tests and the benchmark call
it. Keys of the returned dict (4M's names without the resolution suffix; ``rgb`` here is ``rgb@64`` model-side):

==============  ========================  ==============================================================
key             type                      meaning
==============  ========================  ==============================================================
rgb             uint8 (H, W, 3)           shaded image, sRGB
depth           float32 (H, W)            metres along the optical axis, 0 = sky (no surface)
normal          float32 (H, W, 3)         unit surface normal, camera frame (x right, y up, z to viewer)
semseg          uint8 (H, W)              class ids, `scene.SEMSEG_CLASSES` (sky, wall, floor, objects)
instance        uint8 (H, W)              instance ids, 0 = none; the source of 4M's ``sam_instance``
canny_edge      uint8 (H, W)              OpenCV Canny edges of ``rgb``, 0 or 255
sam_edge        uint8 (H, W)              segment boundaries (instances and stuff), 0 or 255
det             list[dict]                visible instances: class, box (pixels, half-open), visible_fraction
caption         str                       English description of what is visible
color_palette   dict                      k-means colours (1 to 7) and their weights
metadata        dict                      4M-21 metadata fields, raw values
human_poses     list[dict]                visible people: boxes, 2D/3D joints, angles, orientation, scale
scene           dict                      the scene description itself (camera, lights, objects)
==============  ========================  ==============================================================
"""

from __future__ import annotations

import numpy as np

from . import labels
from .caption import caption, caption_lengths
from .render import render
from .scene import MAX_OBJECTS, MAX_RES, MIN_OBJECTS, MIN_RES, SKY, Scene, sample_scene

IMAGE_KEYS = ("rgb", "depth", "normal", "semseg", "instance", "canny_edge", "sam_edge")
VALUE_KEYS = ("det", "caption", "color_palette", "metadata", "human_poses", "scene")
MODALITIES = IMAGE_KEYS + VALUE_KEYS


def check_resolution(res: int) -> int:
    if not isinstance(res, (int, np.integer)) or isinstance(res, bool) or not MIN_RES <= res <= MAX_RES:
        raise ValueError(f"resolution must be an integer from {MIN_RES} to {MAX_RES} pixels, got {res!r}")
    return int(res)


def render_sample(seed: int, index: int, res: int = 64, *, n_objects: int | None = None) -> dict:
    """Render sample ``index`` of world ``seed`` at ``res`` x ``res`` with every modality (see module doc).

    Args:
        seed, index: the sample depends on these two integers only.
        res: image side in pixels, 32 to 1024.
        n_objects: force the number of objects (1 to 10) instead of drawing it.
    """
    res = check_resolution(res)
    if n_objects is not None and not MIN_OBJECTS <= n_objects <= MAX_OBJECTS:
        raise ValueError(f"object count must be from {MIN_OBJECTS} to {MAX_OBJECTS}, got {n_objects}")
    scene = sample_scene(seed, index, n_objects=n_objects)
    return describe(scene, res)


def describe(scene: Scene, res: int) -> dict:
    """Render a given scene and derive every label from the frame."""
    frame = render(scene, res)
    # Labels draw from their own stream so that adding a label never changes the scenes.
    rng = np.random.default_rng([scene.seed, scene.index, 1])
    dets = labels.detections(scene, frame)
    text = caption(scene, dets, sky_visible=bool((frame.semseg == SKY).any()), res=res, rng=rng)
    return {
        "rgb": frame.rgb,
        "depth": frame.depth,
        "normal": frame.normal,
        "semseg": frame.semseg,
        "instance": frame.instance,
        "canny_edge": labels.canny_edges(frame.rgb),
        "sam_edge": labels.segment_edges(frame.semseg, frame.instance),
        "det": dets,
        "caption": text,
        "color_palette": labels.color_palette(frame.rgb, rng),
        "metadata": labels.metadata(scene, frame, dets, caption_lengths(text)),
        "human_poses": labels.human_poses(scene, frame, dets),
        "scene": scene_dict(scene),
    }


def scene_dict(scene: Scene) -> dict:
    """The scene as JSON-ready data (written by hand: `dataclasses.asdict` deep-copies and is slow)."""
    cam = scene.camera
    objects = []
    for o in scene.objects:
        d = {"class": o.cls, "color": o.color, "size": o.size, "material": o.material,
             "position": _r(o.position), "yaw": round(o.yaw, 6), "radius": round(o.radius, 6), "lying": o.lying}
        if o.pose is not None:
            p = o.pose
            d["pose"] = {"action": p.action, "angles": _r(p.angles), "limb_scale": _r(p.limb_scale),
                         "skin": p.skin, "pants": p.pants}
        objects.append(d)
    return {
        "seed": scene.seed, "index": scene.index,
        "camera": {"position": _r(cam.position), "target": _r(cam.target), "fov": round(cam.fov, 6)},
        "lights": [{"direction": _r(lt.direction), "intensity": round(lt.intensity, 6)} for lt in scene.lights],
        "objects": objects,
        "room": None if scene.room is None else round(scene.room, 6), "wall_height": round(scene.wall_height, 6),
        "floor_tones": [_r(t) for t in scene.floor_tones], "checker": round(scene.checker, 6),
        "wall_tone": _r(scene.wall_tone),
    }


def _r(values) -> list[float]:
    return [round(float(v), 6) for v in values]
