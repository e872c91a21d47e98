"""The articulated person: a joint-angle vector, a skeleton of 15 joints, and the capsules of its body.

The body frame has ``y`` up and the person facing ``+z``; ``+x`` is the person's left. A pose is an action name,
12 joint angles (radians, see `ANGLE_NAMES`) and 3 limb scales (torso, arms, legs; 1 = a 1.75 m adult). The
skeleton is built with the pelvis at the origin and then lifted so that the lowest foot rests on the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIONS = ("standing", "waving", "walking", "raising both arms", "pointing", "crouching")
ANGLE_NAMES = (
    "torso_lean", "head_yaw",
    "l_shoulder_pitch", "l_shoulder_abduct", "l_elbow", "r_shoulder_pitch", "r_shoulder_abduct", "r_elbow",
    "l_hip", "l_knee", "r_hip", "r_knee",
)
JOINT_NAMES = (
    "pelvis", "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle",
)
# Bones drawn by previews and turned into capsules: (joint a, joint b, radius in metres at scale 1, body part).
BONES = (
    ("pelvis", "neck", 0.15, "shirt"),
    ("l_shoulder", "l_elbow", 0.055, "shirt"), ("l_elbow", "l_wrist", 0.045, "skin"),
    ("r_shoulder", "r_elbow", 0.055, "shirt"), ("r_elbow", "r_wrist", 0.045, "skin"),
    ("l_hip", "l_knee", 0.075, "pants"), ("l_knee", "l_ankle", 0.06, "pants"),
    ("r_hip", "r_knee", 0.075, "pants"), ("r_knee", "r_ankle", 0.06, "pants"),
)
SKIN_TONES = ((0.93, 0.72, 0.58), (0.80, 0.57, 0.40), (0.55, 0.36, 0.22), (0.36, 0.22, 0.13))
PANTS_TONES = ((0.12, 0.14, 0.22), (0.25, 0.25, 0.27), (0.30, 0.22, 0.14), (0.08, 0.08, 0.08))
HEAD_RADIUS = 0.11
FOOT_RADIUS = 0.06  # the shin capsule's radius: the ankle joint sits this high above the floor


@dataclass(frozen=True)
class Pose:
    action: str
    angles: tuple[float, ...]  # len(ANGLE_NAMES)
    limb_scale: tuple[float, float, float]  # torso, arms, legs
    skin: int = 0  # index into SKIN_TONES
    pants: int = 0  # index into PANTS_TONES

    def angle(self, name: str) -> float:
        return self.angles[ANGLE_NAMES.index(name)]


# Mean joint angles of each action; `sample_pose` adds noise. Arms: pitch raises forward, abduction sideways.
_PRESETS: dict[str, dict[str, float]] = {
    "standing": {"l_shoulder_abduct": 0.12, "r_shoulder_abduct": 0.12, "l_elbow": 0.15, "r_elbow": 0.15},
    "waving": {"r_shoulder_abduct": 1.35, "r_elbow": 1.6, "l_shoulder_abduct": 0.12, "l_elbow": 0.2},
    "walking": {"l_hip": 0.45, "r_hip": -0.35, "r_knee": 0.45, "l_knee": 0.1, "l_shoulder_pitch": -0.4,
                "r_shoulder_pitch": 0.45, "l_elbow": 0.3, "r_elbow": 0.4, "l_shoulder_abduct": 0.08,
                "r_shoulder_abduct": 0.08},
    "raising both arms": {"l_shoulder_pitch": 2.9, "r_shoulder_pitch": 2.9, "l_shoulder_abduct": 0.35,
                          "r_shoulder_abduct": 0.35},
    "pointing": {"r_shoulder_pitch": 1.5, "r_shoulder_abduct": 0.1, "l_shoulder_abduct": 0.12, "l_elbow": 0.2},
    "crouching": {"l_hip": 1.3, "r_hip": 1.2, "l_knee": 2.0, "r_knee": 1.9, "torso_lean": 0.45,
                  "l_shoulder_pitch": 0.9, "r_shoulder_pitch": 0.9, "l_elbow": 0.5, "r_elbow": 0.5},
}


def sample_pose(rng: np.random.Generator, action: str) -> Pose:
    """A pose of ``action`` with joint noise and limb scales drawn from ``rng``."""
    if action not in _PRESETS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    preset = _PRESETS[action]
    mirror = rng.random() < 0.5  # one-armed actions use either arm
    angles = []
    for name in ANGLE_NAMES:
        src = name
        if mirror and name[:2] in ("l_", "r_"):
            src = ("r_" if name[:2] == "l_" else "l_") + name[2:]
        angles.append(float(preset.get(src, 0.0) + rng.normal(0, 0.08)))
    angles[ANGLE_NAMES.index("head_yaw")] = float(rng.uniform(-0.6, 0.6))
    scale = tuple(float(s) for s in rng.uniform(0.9, 1.1, size=3))
    skin, pants = (int(v) for v in rng.integers(0, len(SKIN_TONES), size=2))
    return Pose(action=action, angles=tuple(angles), limb_scale=scale, skin=skin, pants=pants)


def _arm_dir(pitch: float, abduct: float, side: float) -> np.ndarray:
    # Spherical angles from "hanging down": pitch swings it forward (+z), abduction out to the side.
    return np.array([side * np.sin(abduct), -np.cos(abduct) * np.cos(pitch), np.cos(abduct) * np.sin(pitch)])


def _bend(upper: np.ndarray, angle: float) -> np.ndarray:
    # Elbows bend towards up-and-forward, whatever the upper arm does.
    b = np.array([0.0, 1.0, 0.3]) - upper * float(np.dot(upper, (0.0, 1.0, 0.3)))
    b /= np.linalg.norm(b) + 1e-12
    return np.cos(angle) * upper + np.sin(angle) * b


def skeleton(pose: Pose) -> np.ndarray:
    """Joint positions in the body frame, feet on the floor: (15, 3) metres, rows in `JOINT_NAMES` order."""
    a = dict(zip(ANGLE_NAMES, pose.angles))
    st, sa, sl = pose.limb_scale
    j = {"pelvis": np.zeros(3)}
    lean = a["torso_lean"]
    up = np.array([0.0, np.cos(lean), np.sin(lean)])
    j["neck"] = up * 0.55 * st
    j["head"] = j["neck"] + up * 0.16 * st
    for side, s in (("l", 1.0), ("r", -1.0)):
        sh = j["neck"] - up * 0.05 * st + np.array([s * 0.2 * st, 0.0, 0.0])
        d = _arm_dir(a[f"{side}_shoulder_pitch"], a[f"{side}_shoulder_abduct"], s)
        j[f"{side}_shoulder"] = sh
        j[f"{side}_elbow"] = sh + d * 0.3 * sa
        j[f"{side}_wrist"] = j[f"{side}_elbow"] + _bend(d, a[f"{side}_elbow"]) * 0.28 * sa
        hip = np.array([s * 0.1 * st, -0.04 * st, 0.0])
        h, k = a[f"{side}_hip"], a[f"{side}_knee"]
        j[f"{side}_hip"] = hip
        j[f"{side}_knee"] = hip + np.array([0.0, -np.cos(h), np.sin(h)]) * 0.45 * sl
        j[f"{side}_ankle"] = j[f"{side}_knee"] + np.array([0.0, -np.cos(h - k), np.sin(h - k)]) * 0.45 * sl
    joints = np.stack([j[n] for n in JOINT_NAMES])
    joints[:, 1] += FOOT_RADIUS * sl - joints[:, 1].min()
    return joints


def body_parts(joints: np.ndarray, pose: Pose) -> list[tuple[str, np.ndarray, np.ndarray, float, str]]:
    """The solids of a posed body: ``(kind, a, b, radius, part)`` with kind "capsule" or "sphere" (b unused)."""
    st, sa, sl = pose.limb_scale
    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    parts = [("sphere", joints[idx["head"]], joints[idx["head"]], HEAD_RADIUS * st, "skin")]
    for ja, jb, r, part in BONES:
        scale = st if ja == "pelvis" else (sa if "shoulder" in ja or "elbow" in ja else sl)
        parts.append(("capsule", joints[idx[ja]], joints[idx[jb]], r * scale, part))
    return parts


def to_world(points: np.ndarray, position: tuple[float, float], yaw: float) -> np.ndarray:
    """Body frame -> world: turn by ``yaw`` about ``y`` then move to ``position`` (x, z) on the floor."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return points @ rot.T + np.array([position[0], 0.0, position[1]])
