"""Captions parsed back into what they claim, and scored against the scene's exact labels.

The world writes captions with a small grammar (`polymodal.data.world.caption`)::

    <setting sentence> There are <n> objects: <item>, <item> and <item>. [The <phrase> is <relation> the <phrase>.]
    item   := "a" <size> ["shiny"] <color> <class>  |  <count> <size> ["shiny"] <color> <plural>
            | "a person in" <color> <action>            (people one by one, no size)
    n = 0: "There are no objects in view."  n = 1: "There is one object: <item>."

`parse_caption` reads the counting sentence only (relations repeat objects already listed; the setting's wall
colours such as "pale blue" are not objects). It is lenient, since model captions can be broken: text is
lower-cased and the spaces a WordPiece decoder puts around punctuation are removed; an item it cannot read is
skipped and counted in ``unparsed``; a missing counting sentence gives ``count=None`` and no objects.

`caption_scores` compares parsed captions with the scenes' visible objects (the ``det`` entries, which are what
the caption was written from): ``count_acc`` (stated count == number of visible objects), and precision / recall
/ F1 of the multisets of colours, of classes and of (size, colour, class) objects, pooled over the set (true
positives are multiset intersections per caption). People have no size in captions: their size is None on both
sides.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..data.world.caption import NUMBER_WORDS, PLURALS
from ..data.world.person import ACTIONS
from ..data.world.scene import COLOR_NAMES, SIZE_NAMES

SINGULAR = {plural: noun for noun, plural in PLURALS.items()} | {noun: noun for noun in PLURALS}
Triple = tuple[str | None, str, str]  # (size or None for people, colour, class)


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption states: ``count`` (None when there is no counting sentence), ``objects`` one (size, colour,
    class) per object (a group of k counts k times), ``shiny`` per object, ``unparsed`` items not understood."""

    count: int | None
    objects: tuple[Triple, ...] = ()
    shiny: tuple[bool, ...] = ()
    unparsed: tuple[str, ...] = field(default=())


def _number(word: str) -> int | None:
    if word in NUMBER_WORDS:
        return NUMBER_WORDS.index(word)
    return int(word) if word.isdigit() else None


def normalize(text: str) -> str:
    """Lower case, single spaces, no space before ``. , :`` (a WordPiece decoder writes ``objects : a``)."""
    text = re.sub(r"\s+", " ", text.lower()).strip()
    return re.sub(r"\s+([.,:])", r"\1", text)


def _item(words: list[str]) -> tuple[int, Triple, bool] | None:
    """(multiplicity, object, shiny) of one item's words, or None."""
    if len(words) < 3:
        return None
    k = _number(words[0])
    if k is None or k < 1:
        return None
    if words[1] == "person" and len(words) >= 4 and words[2] == "in":  # "a person in red waving"
        action = " ".join(words[4:])
        if words[3] in COLOR_NAMES and (not action or action in ACTIONS):
            return k, (None, words[3], "person"), False
        return None
    rest = words[1:]
    shiny = "shiny" in rest
    rest = [w for w in rest if w != "shiny"]
    if len(rest) != 3:
        return None
    size, color, noun = rest
    cls = SINGULAR.get(noun)
    if size not in SIZE_NAMES or color not in COLOR_NAMES or cls is None:
        return None
    return k, (size, color, cls), shiny


def parse_caption(text: str) -> ParsedCaption:
    """What ``text`` states about the objects (see the module doc)."""
    text = normalize(text)
    if re.search(r"there (are|is) no objects", text):
        return ParsedCaption(0)
    m = re.search(r"there (?:is|are) (\S+) objects?:([^.]*)", text)
    if m is None:
        return ParsedCaption(None)
    count = _number(m.group(1)) if m.group(1) != "one" else 1
    parts = [p.strip() for p in re.split(r",|\band\b", m.group(2)) if p.strip()]
    objects, shiny, unparsed = [], [], []
    for part in parts:
        got = _item(part.split(" "))
        if got is None:
            unparsed.append(part)
            continue
        k, obj, s = got
        objects += [obj] * k
        shiny += [s] * k
    return ParsedCaption(count, tuple(objects), tuple(shiny), tuple(unparsed))


def scene_objects(det: Sequence[dict]) -> list[Triple]:
    """The (size, colour, class) of every visible object of a world ``det`` list (people: size None)."""
    return [(None if d["class"] == "person" else d["size"], d["color"], d["class"]) for d in det]


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else (1.0 if not n_true else 0.0)
    r = tp / n_true if n_true else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def caption_scores(captions: Sequence[str], dets: Sequence[Sequence[dict]]) -> dict[str, float]:
    """Scores of ``captions[i]`` against the visible objects ``dets[i]`` (see the module doc): ``count_acc``,
    ``{color,class,object}_{precision,recall,f1}``, and ``parsed`` (share of captions with a counting
    sentence)."""
    if len(captions) != len(dets):
        raise ValueError(f"caption scores: {len(captions)} captions but {len(dets)} scenes")
    if not captions:
        raise ValueError("caption scores: no captions")
    counts = {k: [0, 0, 0] for k in ("color", "class", "object")}  # tp, predicted, true
    right = parsed = 0
    for text, det in zip(captions, dets):
        got, true = parse_caption(text), scene_objects(det)
        parsed += got.count is not None
        right += got.count == len(true)
        for key, f in (("color", lambda o: o[1]), ("class", lambda o: o[2]), ("object", lambda o: o)):
            p, t = Counter(map(f, got.objects)), Counter(map(f, true))
            c = counts[key]
            c[0] += sum((p & t).values())
            c[1] += sum(p.values())
            c[2] += sum(t.values())
    out = {"count_acc": right / len(captions), "parsed": parsed / len(captions)}
    for key, (tp, n_pred, n_true) in counts.items():
        out.update({f"{key}_{m}": v for m, v in _prf(tp, n_pred, n_true).items()})
    return out
