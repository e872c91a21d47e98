"""English captions generated from what the camera sees.

A caption is written from the detections (visible instances only, so a hidden object is never mentioned) and the
scene: a sentence about the setting, one that counts the objects by size, material, colour and class (people one
by one, with what they do), and up to two spatial relations between objects that the caption can name without
ambiguity. Example:

    A room with gray walls and a checkered floor. There are four objects: two small red spheres, a large shiny
    blue cube and a person in yellow waving. The large shiny blue cube is to the left of the person in yellow.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .scene import WALL_TONE_NAMES, WALL_TONES, Scene

NUMBER_WORDS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PLURALS = {"sphere": "spheres", "cube": "cubes", "cylinder": "cylinders", "cone": "cones", "torus": "tori",
           "capsule": "capsules", "pyramid": "pyramids", "person": "people"}


def _count(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _noun_phrase(det: dict, scene: Scene) -> str:
    """The description without an article: "small shiny red sphere", "person in red waving"."""
    obj = scene.objects[det["instance"] - 1]
    if obj.cls == "person":
        return f"person in {obj.color} {obj.pose.action}"
    shiny = "shiny " if obj.material == "shiny" else ""
    return f"{obj.size} {shiny}{obj.color} {obj.cls}"


def _group_key(det: dict, scene: Scene) -> tuple:
    obj = scene.objects[det["instance"] - 1]
    if obj.cls == "person":  # people are listed one by one, each with an action
        return ("person", det["instance"])
    return (obj.size, obj.material, obj.color, obj.cls)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def object_list(dets: list[dict], scene: Scene) -> str:
    """The counting sentence: "There are three objects: two small red spheres and a large blue cube."."""
    if not dets:
        return "There are no objects in view."
    groups: dict[tuple, list[dict]] = {}
    for det in dets:
        groups.setdefault(_group_key(det, scene), []).append(det)
    items = []
    for members in groups.values():
        phrase = _noun_phrase(members[0], scene)
        if len(members) == 1:
            items.append(f"a {phrase}")
        else:
            *adjectives, noun = phrase.split(" ")
            items.append(" ".join([_count(len(members)), *adjectives, PLURALS[noun]]))
    n = len(dets)
    head = "There is one object" if n == 1 else f"There are {_count(n)} objects"
    return f"{head}: {_join(items)}."


def _relation(a: dict, b: dict, res: int) -> str | None:
    """Where object a is relative to b, from their pixel centroids and the depth of their centres."""
    du = a["centroid"][0] - b["centroid"][0]
    dz = a["distance"] - b["distance"]
    if abs(du) > 0.12 * res:
        return "to the left of" if du < 0 else "to the right of"
    if abs(dz) > 0.5:
        return "in front of" if dz < 0 else "behind"
    return None


def caption(scene: Scene, dets: list[dict], *, sky_visible: bool, res: int, rng: np.random.Generator) -> str:
    """The caption of a rendered scene. ``dets`` carry ``centroid`` (pixels) and ``distance`` (metres)."""
    if scene.room is not None:
        tone = WALL_TONE_NAMES[WALL_TONES.index(scene.wall_tone)]
        setting = f"A room with {tone} walls and a checkered floor."
    else:
        setting = "An open checkered floor under the sky." if sky_visible else "An open checkered floor."
    sentences = [setting, object_list(dets, scene)]
    phrases = Counter(_noun_phrase(d, scene) for d in dets)
    unique = [d for d in dets if phrases[_noun_phrase(d, scene)] == 1]
    if len(unique) >= 2:
        order = rng.permutation(len(unique))
        pairs = [(unique[order[i]], unique[order[i + 1]]) for i in range(0, min(len(order) - 1, 4), 2)]
        for a, b in pairs:
            rel = _relation(a, b, res)
            if rel is not None:
                sentences.append(f"The {_noun_phrase(a, scene)} is {rel} the {_noun_phrase(b, scene)}.")
    return " ".join(sentences)


def caption_lengths(text: str) -> dict[str, int]:
    """4M's caption metadata: characters, words and sentences."""
    return {
        "caption_n_chars": len(text),
        "caption_n_words": len(text.split()),
        "caption_n_sentences": sum(1 for s in text.split(".") if s.strip()),
    }
