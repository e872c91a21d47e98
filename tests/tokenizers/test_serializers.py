"""Serializers: 4M's exact strings, ids equal to tokenizing them, round trips up to the stated quantization (empty
and largest values included), lenient parsing of garbled sequences, clear errors, and the world adapters."""

from __future__ import annotations

import math
import random

import pytest
import torch

from polymodal.tokenizers.base import TokenizerInputError
from polymodal.tokenizers.serializers import (
    FIELDS,
    SERIALIZERS,
    Box,
    Instance,
    PersonPose,
    QueryPoint,
    SerializationError,
    boxes_from_world,
    boxes_to_pixels,
    instances_from_world,
    metadata_from_world,
    palette_from_world,
    poses_from_world,
    sample_query_points,
)
from polymodal.tokenizers.text import TextTokenizer, TextTokenizerConfig, TextTooLongError, TextTruncationWarning
from polymodal.tokenizers.text_layout import EOS

from .text_helpers import RES, WORLD_EXTRA, official, trained, world_samples

TOKENIZERS = [pytest.param(trained, id="trained"), pytest.param(official, id="official")]
DET, META, PALETTE, POSES, INST = (SERIALIZERS[k] for k in
                                   ("det", "metadata", "color_palette", "human_poses", "sam_instance"))
CODES = (3, 700, 0, 511, 512, 1023, 100, 900)


def person(**over) -> PersonPose:
    p = dict(box=(0.1, 0.2, 0.3, 0.9), pose=CODES, global_orient=(1, 0, 0, 0, 1, 0, 0, 0, 1),
             camera=(0.5, -1.0, 19.0), shape=(0.0,) * 10)
    p.update(over)
    return PersonPose(**p)


def mask_codes(k: int) -> tuple[int, ...]:
    return tuple((k * 97 + j * 61) % 1024 for j in range(16))


# ------------------------------------------------------------------------------------------- formats


def test_the_strings_are_4ms():
    boxes = [Box(0.1, 0.2, 0.5, 0.6, "wine glass"), Box(0.0, 0.0, 0.3, 1.0, "sphere")]
    assert DET.to_text(boxes) == "v0=0 v1=0 v2=300 v3=999 sphere v0=100 v1=200 v2=500 v3=599 wine glass"
    assert META.to_text({"original_width": 64, "n_humans": 2, "brightness": 128.0}) == \
        "v1=0 v0=2 v1=5 v0=2 v1=10 v0=24"
    assert PALETTE.to_text([(255, 128, 0), (10, 20, 30)]) == "v1=2 v0=255 v0=128 v0=0 v0=10 v0=20 v0=30"
    # 4M: box round(x * 999); codes < 512 as v0, else v1=c-512; round(499.5 g + 499.5), round(49.95 c + 49.95),
    # round(166.5 b + 499.5); groups in the order pose, global, camera, shape.
    assert POSES.to_text([person()]) == (
        "human v0=100 v1=200 v2=300 v3=899 pose v0=3 v1=188 v0=0 v0=511 v1=0 v1=511 v0=100 v1=388 "
        "global v0=999 v0=500 v0=500 v0=500 v0=999 v0=500 v0=500 v0=500 v0=999 camera v0=75 v0=0 v0=999 "
        "shape" + " v0=500" * 10)
    codes = mask_codes(1)
    inst = [QueryPoint(x=10, y=20, instances=(Instance((5, 8, 40, 50), codes),)), QueryPoint(x=200, y=3)]
    code_text = " ".join(f"v0={c}" if c < 512 else f"v1={c - 512}" for c in codes)
    assert INST.to_text(inst) == f"point v0=20 v1=10 polygon v0=5 v1=8 v2=40 v3=50 {code_text} point v0=3 v1=200 none"
    # Empty values: no tokens but [EOS], except 4M's "none" for no people and the palette's count.
    assert [s.to_text(v) for s, v in ((DET, []), (META, {}), (PALETTE, []), (POSES, []), (INST, []))] == \
        ["", "", "v1=0", "none", ""]


def test_official_ids_of_the_examples():
    tok = official()
    assert DET.encode([Box(0.1, 0.2, 0.5, 0.6, "wine glass")], tok) == [304, 1404, 2704, 3803, 4282, EOS]
    assert META.encode({"original_width": 64, "brightness": 128.0}, tok) == [1204, 206, 1214, 228, EOS]
    assert PALETTE.encode([(255, 128, 0)], tok) == [1205, 459, 332, 204, EOS]
    assert POSES.encode([], tok) == [tok.hf.token_to_id("none"), EOS]


@pytest.mark.parametrize("get", TOKENIZERS)
def test_ids_equal_tokenizing_the_string(get):
    tok = get()
    g = torch.Generator().manual_seed(0)
    for s in world_samples()[:20]:
        pose_codes = [CODES] * len(s["human_poses"])
        values = [(DET, boxes_from_world(s["det"], RES)), (META, metadata_from_world(s["metadata"])),
                  (PALETTE, palette_from_world(s["color_palette"])),
                  (POSES, poses_from_world(s["human_poses"], RES, pose_codes)),
                  (INST, instances_from_world(s["instance"], sample_query_points(generator=g),
                                              {k: mask_codes(k) for k in range(1, 11)}))]
        for ser, v in values:
            assert ser.encode(v, tok) == tok.tokenize(ser.to_text(v)) + [EOS], ser.modality


# ------------------------------------------------------------------------------------------- round trips


def random_boxes(rng: random.Random, n: int, labels) -> list[Box]:
    out = []
    for _ in range(n):
        x0, x1 = sorted(rng.random() for _ in range(2))
        y0, y1 = sorted(rng.random() for _ in range(2))
        out.append(Box(x0, y0, x1, y1, rng.choice(labels)))
    return out


@pytest.mark.parametrize("get", TOKENIZERS)
def test_boxes_round_trip(get):
    tok = get()
    rng = random.Random(0)
    labels = list(tok.class_names) + list(WORLD_EXTRA) + ["Wine Glass", "red ball"]
    for n in [0, 1, 2, 7, 30]:
        boxes = random_boxes(rng, n, labels)
        back = DET.decode(DET.encode(boxes, tok), tok, strict=True)
        ordered = sorted(boxes, key=lambda b: b.xmin ** 2 + b.ymin ** 2)
        assert len(back) == n
        for a, b in zip(ordered, back):
            assert max(abs(u - v) for u, v in zip(a.coords, b.coords)) <= 0.5 / 999 + 1e-12
            assert b.label == a.label.lower()
    # As many single-token boxes as fit 256 tokens: 51 * 5 + [EOS].
    full = random_boxes(rng, 51, list(tok.class_names))
    ids = DET.encode(full, tok)
    assert len(ids) == 256 and ids[-1] == EOS and len(DET.decode(ids, tok, strict=True)) == 51
    with pytest.warns(TextTruncationWarning, match="1 of 52 records"):
        ids = DET.encode(full + full[:1], tok)
    assert len(ids) == 255 and EOS not in ids and len(DET.decode(ids, tok, strict=True)) == 51
    strict = TextTokenizer(tok.hf, TextTokenizerConfig(truncation="error"))
    with pytest.raises(TextTooLongError, match="det: 1 of 52 records"):
        DET.encode(full + full[:1], strict)


def random_metadata(rng: random.Random, fields=FIELDS) -> dict:
    out = {}
    for f in fields:
        if f.kind == "image_dim":
            out[f.name] = rng.randrange(1, 4000)
        elif f.kind == "count":
            out[f.name] = rng.randrange(0, 1000)
        else:
            hi = f.hi if f.kind == "range" else f.domain[1]
            out[f.name] = rng.uniform(f.lo, hi)
    return out


@pytest.mark.parametrize("get", TOKENIZERS)
def test_metadata_round_trip(get):
    tok = get()
    rng = random.Random(1)
    world_fields = [f for f in FIELDS if f.id <= 18]
    assert META.decode(META.encode({}, tok), tok, strict=True) == {}
    for _ in range(20):
        meta = random_metadata(rng, world_fields)
        ids = META.encode(meta, tok)
        assert len(ids) == 39 <= META.max_tokens and ids[-1] == EOS  # all 19 world fields within 40 tokens
        back = META.decode(ids, tok, strict=True)
        assert list(back) == list(meta)
        for f in world_fields:
            v, d = meta[f.name], back[f.name]
            if f.kind == "image_dim":
                assert d <= v < d + 32
            else:
                assert abs(d - v) <= f.tolerance + 1e-9, f.name
    # 4M's manual bins, and its clipping above a binning range (colorfulness 400 lands in the last bin).
    back = META.decode(META.encode({"watermark_score": 0.7, "aesthetic_score": 5.0, "colorfulness": 400}, tok), tok)
    assert back == {"colorfulness": 150.0, "watermark_score": 0.75, "aesthetic_score": 5.0}
    # All 21 fields are 42 tokens: the chunks that fit are kept, [EOS] is dropped (4M's chunk rule).
    with pytest.warns(TextTruncationWarning, match="1 of 21 records"):
        ids = META.encode(random_metadata(rng), tok)
    assert len(ids) == 40 and EOS not in ids and len(META.decode(ids, tok, strict=True)) == 20


@pytest.mark.parametrize("get", TOKENIZERS)
def test_palette_round_trip(get):
    tok = get()
    rng = random.Random(2)
    for n in range(8):
        colors = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(n)]
        ids = PALETTE.encode(colors, tok)
        assert len(ids) == 3 * n + 2 <= PALETTE.max_tokens and PALETTE.decode(ids, tok, strict=True) == colors
    assert PALETTE.decode(PALETTE.encode([(0.4, 254.6, 7.5)], tok), tok) == [(0, 255, 8)]  # rounded


def random_person(rng: random.Random) -> PersonPose:
    x0, x1 = sorted(rng.random() for _ in range(2))
    y0, y1 = sorted(rng.random() for _ in range(2))
    return PersonPose(box=(x0, y0, x1, y1), pose=tuple(rng.randrange(1024) for _ in range(8)),
                      global_orient=tuple(rng.uniform(-1, 1) for _ in range(9)),
                      camera=tuple(rng.uniform(-1, 19) for _ in range(3)),
                      shape=tuple(rng.uniform(-3, 3) for _ in range(10)))


def assert_close_people(a: list[PersonPose], b: list[PersonPose]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.pose == q.pose
        for name, step in (("box", 1 / 999), ("global_orient", 1 / 499.5), ("camera", 1 / 49.95),
                           ("shape", 1 / 166.5)):
            assert max(abs(u - v) for u, v in zip(getattr(p, name), getattr(q, name))) <= step / 2 + 1e-9, name


@pytest.mark.parametrize("get", TOKENIZERS)
def test_poses_round_trip(get):
    tok = get()
    rng = random.Random(3)
    assert POSES.decode(POSES.encode([], tok), tok, strict=True) == []
    people = [random_person(rng) for _ in range(7)]
    ids = POSES.encode(people, tok)
    n_word = len(tok.piece_ids("human")) + sum(len(tok.piece_ids(k)) for k in ("pose", "global", "camera", "shape"))
    assert len(ids) == 7 * (4 + 8 + 9 + 3 + 10 + n_word) + 1
    if n_word == 5:  # the official vocabulary: 39 tokens a person, 7 people + [EOS] fit 275
        assert len(ids) == 274 <= POSES.max_tokens
    assert_close_people(people, POSES.decode(ids, tok, strict=True))
    g = torch.Generator().manual_seed(0)  # groups in a random order per person (4M's training order) decode alike
    shuffled = POSES.encode(people[:3], tok, generator=g)
    assert shuffled != POSES.encode(people[:3], tok)
    assert_close_people(people[:3], POSES.decode(shuffled, tok, strict=True))
    clipped = POSES.decode(POSES.encode([person(camera=(-5.0, 30.0, 3.0))], tok), tok)[0]
    assert clipped.camera == pytest.approx((-1.0, 19.0, 3.0), abs=0.5 / 49.95)  # 4M clips the camera


@pytest.mark.parametrize("get", TOKENIZERS)
def test_instances_round_trip(get):
    tok = get()
    rng = random.Random(4)
    assert INST.decode(INST.encode([], tok), tok, strict=True) == []

    def point(k: int) -> QueryPoint:
        insts = []
        for j in range(k):
            x0, y0 = rng.randrange(0, 200), rng.randrange(0, 200)
            insts.append(Instance((x0, y0, x0 + rng.randrange(1, 24), y0 + rng.randrange(1, 24)), mask_codes(j)))
        return QueryPoint(x=rng.randrange(224), y=rng.randrange(224), instances=tuple(insts))

    points = [point(k) for k in (0, 1, 2, 3, 1, 0, 4)]
    ids = INST.encode(points, tok)
    assert ids[-1] == EOS and len(ids) <= INST.max_tokens
    assert INST.decode(ids, tok, strict=True) == points
    g = torch.Generator().manual_seed(1)
    back = INST.decode(INST.encode(points, tok, generator=g), tok, strict=True)  # shuffled as 4M does
    assert {(p.x, p.y, frozenset(p.instances)) for p in back} == {(p.x, p.y, frozenset(p.instances)) for p in points}


# ------------------------------------------------------------------------------------------- garbled sequences


def corrupt(ids: list[int], rng: random.Random, vocab: int) -> list[int]:
    ids = list(ids)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(4)
        j = rng.randrange(len(ids) + 1)
        if kind == 0 and ids:
            del ids[min(j, len(ids) - 1)]
        elif kind == 1:
            ids.insert(j, rng.choice([rng.randrange(vocab), rng.randrange(204, 4204), 5, 2, 0]))
        elif kind == 2:
            ids = ids[:j]
        else:
            ids = [rng.randrange(vocab) for _ in range(rng.randrange(30))]
    return ids


def test_garbled_sequences_parse_leniently_and_fail_strictly():
    tok = trained()
    rng = random.Random(5)
    values = {DET: random_boxes(rng, 6, list(tok.class_names)), META: random_metadata(rng, FIELDS[:19]),
              PALETTE: [(1, 2, 3), (4, 5, 6)], POSES: [random_person(rng) for _ in range(3)],
              INST: [QueryPoint(1, 2, (Instance((1, 2, 3, 4), mask_codes(0)),)), QueryPoint(5, 6)]}
    strict_failures = 0
    for ser, value in values.items():
        clean = ser.encode(value, tok)
        for _ in range(300):
            ids = corrupt(clean, rng, tok.vocab_size)
            out = ser.decode(ids, tok)  # never raises
            assert isinstance(out, type(ser.decode(clean, tok)))
            try:
                ser.decode(ids, tok, strict=True)
            except SerializationError:
                strict_failures += 1
    assert strict_failures > 500


def test_lenient_parsing_keeps_the_good_records():
    tok = trained()
    boxes = [Box(0.1, 0.1, 0.2, 0.2, "person"), Box(0.3, 0.3, 0.4, 0.4, "sphere"), Box(0.5, 0.5, 0.6, 0.6, "cube")]
    ids = DET.encode(boxes, tok)
    del ids[7]  # the second box loses its v2
    assert [b.label for b in DET.decode(ids, tok)] == ["person", "cube"]
    with pytest.raises(SerializationError, match="det: box 1 is not v0= v1= v2= v3= <class>"):
        DET.decode(ids, tok, strict=True)
    meta = META.encode({"n_humans": 3, "entropy": 5.0}, tok)
    garbled = [5] + meta[:2] + [7] + meta[2:]  # a sentinel before the first chunk and after it
    assert META.decode(garbled, tok) == {"n_humans": 3, "entropy": pytest.approx(5.0)}
    with pytest.raises(SerializationError, match="tokens after"):
        META.decode(meta[:2] + [7] + meta[2:], tok, strict=True)
    assert META.decode([1204 + 40, 210], tok) == {}  # an unknown field id
    assert POSES.decode([5, 3], tok) == [] and PALETTE.decode([], tok) == []
    people = POSES.encode([person(), person(pose=(1,) * 8)], tok)
    assert [p.pose for p in POSES.decode(people[:30] + people[39:], tok)] == [(1,) * 8]


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("ser, value, match", [
    (DET, [Box(math.nan, 0, 1, 1, "cat")], r"det: box 0 \('cat'\) xmin is nan"),
    (DET, [Box(0, 0, 1.2, 1, "cat")], r"xmax is 1.2: must be in \[0.0, 1.0\]"),
    (DET, [Box(0.5, 0, 0.4, 1, "cat")], "xmin > xmax"),
    (DET, [Box(0, 0, 1, 1, " ")], "class name"),
    (META, {"brightness": math.nan}, "metadata field 'brightness' is nan"),
    (META, {"walkability": 1.5}, r"metadata field 'walkability' is 1.5: must be in \[0"),
    (META, {"n_humans": -1}, "metadata field 'n_humans' is -1"),
    (META, {"n_humans": 2.5}, "must be an integer"),
    (META, {"width": 64}, "unknown field 'width'"),
    (PALETTE, [(0, 0, 300)], "color 0 channel b is 300"),
    (PALETTE, [(0, 0, 0)] * 8, "at most 7"),
    (POSES, [person(shape=(math.inf,) + (0.0,) * 9)], "person 0 shape 0 is inf"),
    (POSES, [person(global_orient=(1.5,) + (0.0,) * 8)], "person 0 global 0 is 1.5"),
    (POSES, [person(pose=(1024,) * 8)], "person 0 pose code 0 is 1024"),
    (POSES, [person(pose=(1,) * 7)], "expected 8 values"),
    (INST, [QueryPoint(224, 0)], "point 0 x is 224"),
    (INST, [QueryPoint(0, 0, (Instance((5, 5, 5, 9), mask_codes(0)),))], "is empty"),
    (INST, [QueryPoint(0, 0, (Instance((5, 5, 6, 9), (1,) * 15),))], "15 mask codes"),
])
def test_bad_values_raise_naming_the_field(ser, value, match):
    with pytest.raises(SerializationError, match=match):
        ser.encode(value, trained())


def test_ids_outside_the_vocabulary_raise():
    tok = trained()
    with pytest.raises(TokenizerInputError, match=f"token id {tok.vocab_size} .*{tok.vocab_size} ids"):
        DET.decode([204, tok.vocab_size], tok)
    with pytest.raises(SerializationError, match="one sequence"):
        DET.decode(torch.zeros(2, 3, dtype=torch.long), tok)


# ------------------------------------------------------------------------------------------- the world


@pytest.mark.parametrize("get", TOKENIZERS)
def test_world_values_round_trip(get):
    tok = get()
    g = torch.Generator().manual_seed(0)
    for s in world_samples():
        dets = DET.decode(DET.encode(boxes_from_world(s["det"], RES), tok), tok, strict=True)
        want = sorted(({"class": d["class"], "box": d["box"]} for d in s["det"]),
                      key=lambda d: d["box"][0] ** 2 + d["box"][1] ** 2)
        assert boxes_to_pixels(dets, RES) == want  # pixel-exact, every class name back
        assert PALETTE.decode(PALETTE.encode(palette_from_world(s["color_palette"]), tok), tok, strict=True) == \
            [tuple(c) for c in s["color_palette"]["colors"]]
        meta = META.decode(META.encode(metadata_from_world(s["metadata"]), tok), tok, strict=True)
        assert meta.keys() == s["metadata"].keys() and meta["n_humans"] == s["metadata"]["n_humans"]
        people = poses_from_world(s["human_poses"], RES, [CODES] * len(s["human_poses"]))
        assert_close_people(people, POSES.decode(POSES.encode(people, tok), tok, strict=True))
        codes = {k: mask_codes(k) for k in range(1, 11)}
        points = instances_from_world(s["instance"], sample_query_points(generator=g), codes)
        assert INST.decode(INST.encode(points, tok), tok, strict=True) == points


def test_world_instances_are_the_instances_under_the_points():
    s = next(s for s in world_samples() if (s["instance"] > 0).mean() > 0.1)
    inst = s["instance"]
    ys, xs = (inst > 0).nonzero()
    pts = [(int(x) * 224 // RES + 1, int(y) * 224 // RES + 1) for x, y in zip(xs[:3], ys[:3])] + [(0, 0)]
    out = instances_from_world(inst, pts, {k: mask_codes(k) for k in range(1, 11)})
    for (x, y), q in zip(pts, out):
        k = int(inst[y * RES // 224, x * RES // 224])
        assert (q.x, q.y) == (x, y) and (len(q.instances) == 1) == (k > 0)
        if k:
            box = next(d["box"] for d in s["det"] if d["instance"] == k)
            assert q.instances[0].box == tuple(round(v * 224 / RES) for v in box)
            assert q.instances[0].codes == mask_codes(k)
    with pytest.raises(SerializationError, match="no mask codes given for world instance"):
        instances_from_world(inst, pts, {})


@pytest.mark.parametrize("modality, value, message", [
    ("det", [{"box": [0, 0, 1, 1]}], "det: box 0 is a dict, not a Box"),
    ("sam_instance", [(3, 4)], "sam_instance: point 0 is a tuple, not a QueryPoint"),
    ("sam_instance", [QueryPoint(x=3, y=4, instances=({"box": (0, 0, 5, 5)},))],
     "sam_instance: point 0 instance 0 is a dict, not an Instance"),
    ("human_poses", ["a person"], "human_poses: person 0 is a str, not a PersonPose"),
])
def test_a_value_of_the_wrong_type_is_named_with_its_type(modality, value, message):
    """One check for every serializer (`common.check_type`): a user's dict or tuple where a dataclass belongs."""
    with pytest.raises(SerializationError) as e:
        SERIALIZERS[modality].records(value)
    assert str(e.value) == message
