"""Scene descriptions of the built-in world, sampled from ``(seed, index)`` alone.

A scene is plain data (no arrays bigger than a joint list): a camera, one or two directional lights, a floor, an
optional room of walls, and 1 to 10 objects resting on the floor. `sample_scene(seed, index)` draws it from
``np.random.default_rng([seed, index])``, so sample ``i`` of a world never depends on the samples before it and
any worker can render any sample.

World frame: metres, ``y`` up, the floor is the plane ``y = 0``. Angles are radians.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .person import ACTIONS, Pose, sample_pose

# Semantic classes (the ``semseg`` ids). Stuff first, then the object classes in `OBJECT_CLASSES` order.
STUFF_CLASSES = ("sky", "wall", "floor")
OBJECT_CLASSES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule", "pyramid", "person")
SEMSEG_CLASSES = STUFF_CLASSES + OBJECT_CLASSES
SKY, WALL, FLOOR = 0, 1, 2


def semseg_id(cls: str) -> int:
    """The semantic id of a class name (see `SEMSEG_CLASSES`)."""
    return SEMSEG_CLASSES.index(cls)


# Named object colours, linear-ish RGB in [0, 1] (gamma is applied after shading).
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.08, 0.06),
    "orange": (0.95, 0.38, 0.05),
    "yellow": (0.92, 0.80, 0.10),
    "green": (0.12, 0.60, 0.15),
    "cyan": (0.10, 0.70, 0.78),
    "blue": (0.08, 0.20, 0.85),
    "purple": (0.45, 0.12, 0.70),
    "pink": (0.95, 0.45, 0.65),
    "white": (0.90, 0.90, 0.88),
    "brown": (0.42, 0.24, 0.10),
}
COLOR_NAMES = tuple(COLORS)
SIZES = {"small": 0.32, "large": 0.55}  # characteristic half-extent in metres
SIZE_NAMES = tuple(SIZES)
MATERIALS = ("matte", "shiny")

# Floor and wall tones: neutral so that a named colour always means an object.
FLOOR_TONES = ((0.55, 0.55, 0.55), (0.62, 0.50, 0.36), (0.40, 0.42, 0.46), (0.70, 0.66, 0.58))
WALL_TONES = ((0.78, 0.76, 0.72), (0.62, 0.68, 0.74), (0.74, 0.70, 0.62), (0.66, 0.66, 0.66))
WALL_TONE_NAMES = ("beige", "pale blue", "sand", "gray")

MIN_OBJECTS, MAX_OBJECTS = 1, 10
MIN_RES, MAX_RES = 32, 1024


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking from ``position`` at ``target``; ``fov`` is the vertical field of view."""

    position: tuple[float, float, float]
    target: tuple[float, float, float]
    fov: float

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors of the camera in world coordinates."""
        cached = self.__dict__.get("_frame")
        if cached is None:  # computed once per camera: the renderer and the labels ask for it often
            f = np.subtract(self.target, self.position).astype(np.float64)
            f /= np.sqrt(f @ f)
            r = np.array([-f[2], 0.0, f[0]])  # f x (0, 1, 0)
            r /= np.sqrt(r @ r)
            up = np.array([r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0]])
            cached = (r, up, f)
            object.__setattr__(self, "_frame", cached)
        return cached


@dataclass(frozen=True)
class Light:
    """A directional light: ``direction`` points from the scene towards the light (unit)."""

    direction: tuple[float, float, float]
    intensity: float


@dataclass(frozen=True)
class Obj:
    """One object on the floor.

    ``position`` is the centre of its footprint on the floor (x, z); ``yaw`` turns it about the vertical axis;
    ``radius`` bounds its footprint (used for placement). ``pose`` is set for people only; a person's height
    comes from its pose's limb scales, not from ``size`` (drawn for every class, unused for people).
    """

    cls: str
    color: str
    size: str
    material: str
    position: tuple[float, float]
    yaw: float
    radius: float
    lying: bool = False
    pose: Pose | None = None


@dataclass(frozen=True)
class Scene:
    seed: int
    index: int
    camera: Camera
    lights: tuple[Light, ...]
    objects: tuple[Obj, ...]
    room: float | None  # half-size of the square room (walls at |x|, |z| = room), None for an open floor
    wall_height: float
    floor_tones: tuple[tuple[float, float, float], tuple[float, float, float]]
    checker: float  # side of a floor tile in metres
    wall_tone: tuple[float, float, float]
    extras: dict = field(default_factory=dict, compare=False)


def footprint(cls: str, size: str, *, lying: bool = False) -> float:
    """Radius of the circle on the floor that holds an object (metres)."""
    s = SIZES[size]
    return {"sphere": s, "cube": 0.85 * s * 1.42, "cylinder": 0.8 * s, "cone": s, "torus": 1.25 * s,
            "capsule": 1.2 * s if lying else 0.5 * s, "pyramid": 1.42 * s, "person": 0.45}[cls]


def _place(rng: np.random.Generator, radii: list[float]) -> list[tuple[float, float]]:
    """Non-overlapping footprints in a disc that grows when the objects do not fit (rejection sampling)."""
    area = sum(np.pi * (r + 0.1) ** 2 for r in radii)
    spread = max(1.2, float(np.sqrt(area / np.pi)) * 1.6)
    placed: list[tuple[float, float, float]] = []
    for r in radii:
        for attempt in range(200):
            grow = spread * (1.0 + attempt / 60)
            rho, phi = grow * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            x, z = rho * np.cos(phi), rho * np.sin(phi)
            if all((x - px) ** 2 + (z - pz) ** 2 > (r + pr + 0.05) ** 2 for px, pz, pr in placed):
                break
        placed.append((float(x), float(z), r))
    return [(x, z) for x, z, _ in placed]


def sample_scene(seed: int, index: int, *, n_objects: int | None = None) -> Scene:
    """Draw scene ``index`` of world ``seed``.

    Args:
        seed, index: non-negative integers; the scene depends on nothing else.
        n_objects: force the number of objects (1 to 10); drawn uniformly when None.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    if n_objects is not None and not MIN_OBJECTS <= n_objects <= MAX_OBJECTS:
        raise ValueError(f"n_objects must be between {MIN_OBJECTS} and {MAX_OBJECTS}, got {n_objects}")
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1)) if n_objects is None else n_objects

    # Attributes drawn as arrays (one generator call each, not one per object). People are rarer than the other
    # classes so that most scenes stay cheap and varied.
    weights = np.array([1.0] * (len(OBJECT_CLASSES) - 1) + [0.7])
    classes = [OBJECT_CLASSES[c] for c in rng.choice(len(OBJECT_CLASSES), size=n, p=weights / weights.sum())]
    sizes = [SIZE_NAMES[k] for k in rng.integers(0, len(SIZE_NAMES), size=n)]
    colors = [COLOR_NAMES[k] for k in rng.integers(0, len(COLOR_NAMES), size=n)]
    materials = [MATERIALS[k] for k in rng.integers(0, len(MATERIALS), size=n)]
    yaws = rng.uniform(-np.pi, np.pi, size=n)
    lying = [bool(c == "capsule" and u < 0.5) for c, u in zip(classes, rng.random(size=n))]
    radii = [footprint(c, sz, lying=ly) for c, sz, ly in zip(classes, sizes, lying)]
    positions = _place(rng, radii)
    objects = []
    for k in range(n):
        pose = sample_pose(rng, ACTIONS[int(rng.integers(len(ACTIONS)))]) if classes[k] == "person" else None
        objects.append(Obj(
            cls=classes[k], color=colors[k], size=sizes[k], material=materials[k], position=positions[k],
            yaw=float(yaws[k]), radius=radii[k], lying=lying[k], pose=pose,
        ))

    # Camera on a circle around the objects' centre, far enough to frame their spread.
    cx = float(np.mean([o.position[0] for o in objects]))
    cz = float(np.mean([o.position[1] for o in objects]))
    spread = max(float(np.hypot(o.position[0] - cx, o.position[1] - cz)) + o.radius for o in objects)
    fov = float(np.deg2rad(rng.uniform(40, 70)))
    dist = float(np.clip((spread + 0.4) / np.tan(fov / 2) * rng.uniform(0.75, 1.1), 3.0, 14.0))
    azim = float(rng.uniform(-np.pi, np.pi))
    height = float(rng.uniform(1.0, min(5.0, 0.9 * dist)))
    ground = float(np.sqrt(max(dist**2 - height**2, 1.0)))
    camera = Camera(
        position=(cx + ground * np.sin(azim), height, cz + ground * np.cos(azim)),
        target=(cx + rng.normal(0, 0.15), float(rng.uniform(0.2, 0.7)), cz + rng.normal(0, 0.15)),
        fov=fov,
    )

    lights = [_light(rng, 1.0)]
    if rng.random() < 0.4:
        lights.append(_light(rng, float(rng.uniform(0.25, 0.5))))
    room = None
    wall_height = float(rng.uniform(2.5, 4.0))
    if rng.random() < 0.6:  # a room whose walls stand behind the camera and the objects
        reach = max(abs(camera.position[0]), abs(camera.position[2]), abs(cx) + spread, abs(cz) + spread)
        room = float(reach + rng.uniform(1.0, 4.0))
        # Walls above the camera: a downward ray never passes over them to a floor outside the room.
        wall_height = max(wall_height, height + 0.5)
    ti = rng.choice(len(FLOOR_TONES), size=2, replace=False)
    dark = 0.55 + 0.2 * rng.random()
    floor_tones = (FLOOR_TONES[ti[0]], tuple(c * dark for c in FLOOR_TONES[ti[1]]))
    return Scene(
        seed=seed, index=index, camera=camera, lights=tuple(lights), objects=tuple(objects), room=room,
        wall_height=wall_height, floor_tones=floor_tones, checker=float(rng.uniform(0.4, 1.0)),
        wall_tone=WALL_TONES[int(rng.integers(len(WALL_TONES)))],
    )


def _light(rng: np.random.Generator, intensity: float) -> Light:
    elev, azim = rng.uniform(np.deg2rad(30), np.deg2rad(70)), rng.uniform(-np.pi, np.pi)
    d = (np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim))
    return Light(direction=tuple(float(v) for v in d), intensity=intensity)
