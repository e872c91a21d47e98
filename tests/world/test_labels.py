"""Derived modalities agree with the pixels: boxes, caption, metadata, poses, edges, palette."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from polymodal.data.world import render_sample
from polymodal.data.world.caption import NUMBER_WORDS, PLURALS
from polymodal.data.world.labels import color_palette
from polymodal.data.world.person import JOINT_NAMES
from polymodal.data.world.render import render
from polymodal.data.world.sample import describe
from polymodal.data.world.scene import FLOOR

from .helpers import RES, lone_person_scene, person_scenes, row_scene, samples


def test_every_box_is_the_extent_of_its_visible_pixels():
    for s in samples():
        ids = sorted(int(i) for i in np.unique(s["instance"]) if i)
        assert [d["instance"] for d in s["det"]] == ids, "one detection per visible instance"
        for d in s["det"]:
            ys, xs = np.nonzero(s["instance"] == d["instance"])
            assert d["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert d["pixels"] == len(xs)
            assert 0 < d["visible_fraction"] <= 1
            ax0, ay0, ax1, ay1 = d["amodal_box"]
            x0, y0, x1, y1 = d["box"]
            assert ax0 <= x0 and ay0 <= y0 and x1 <= ax1 and y1 <= ay1, "the visible box lies in the amodal one"


def test_occluded_objects_report_it():
    occluded = [d for s in samples() for d in s["det"] if d["visible_fraction"] < 0.95]
    assert occluded, "the sampled scenes should contain occlusions"
    for s in samples():
        meta = s["metadata"]
        any_occluded = any(d["visible_fraction"] < 1 for d in s["det"])
        assert (meta["occlusion_score"] > 0) == any_occluded


def _caption_counts(text: str) -> Counter:
    """Parse "There are five objects: two small red spheres, a person in blue waving and ..." into class counts."""
    m = re.search(r"There (?:is|are) (\w+) objects?(?:: (.*?)\.(?: |$)| in view\.)", text)
    assert m, f"no counting sentence in {text!r}"
    total = 0 if m.group(1) == "no" else (1 if m.group(1) == "one" else NUMBER_WORDS.index(m.group(1)))
    counts: Counter = Counter()
    if m.group(2):
        items = re.split(r", | and (?=(?:a|two|three|four|five|six|seven|eight|nine|ten) )", m.group(2))
        singular = {v: k for k, v in PLURALS.items()}
        for item in items:
            words = item.split()
            n = 1 if words[0] == "a" else NUMBER_WORDS.index(words[0])
            noun = next(w for w in words if w in PLURALS or w in singular)
            counts[singular.get(noun, noun)] += n
    assert sum(counts.values()) == total, f"items do not add up to the total in {text!r}"
    return counts


def test_caption_and_metadata_counts_match_the_boxes():
    for s in samples():
        from_boxes = Counter(d["class"] for d in s["det"])
        assert _caption_counts(s["caption"]) == from_boxes, s["caption"]
        meta = s["metadata"]
        assert meta["n_coco_instances"] == meta["n_sam_instances"] == len(s["det"])
        assert meta["n_humans"] == from_boxes["person"] == len(s["human_poses"])
        assert meta["coco_instance_diversity"] == len(from_boxes)
        assert meta["caption_n_chars"] == len(s["caption"])
        assert meta["caption_n_words"] == len(s["caption"].split())


def test_caption_names_what_a_person_does():
    s = describe(lone_person_scene("waving"), 64)
    assert "a person in red waving" in s["caption"]
    s = describe(lone_person_scene("crouching"), 64)
    assert "crouching" in s["caption"]


def test_caption_relations_follow_the_image():
    s = describe(row_scene(["sphere", "cube", "cone"]), 96)
    found = re.findall(r"The (.+?) is (to the left of|to the right of) the (.+?)\.", s["caption"])
    assert found, s["caption"]
    for a, rel, b in found:
        xa = next(d["centroid"][0] for d in s["det"] if a.endswith(d["class"]) and d["color"] in a)
        xb = next(d["centroid"][0] for d in s["det"] if b.endswith(d["class"]) and d["color"] in b)
        assert (xa < xb) == (rel == "to the left of")


def test_person_joints_project_inside_the_person_box():
    """Joints lie inside the body, so inside the box of its silhouette. The box is measured on pixel centres: a
    limb thinner than a pixel can fall between them, hence half a pixel of slack for people drawn large and 1.5
    pixels for the small people of random scenes."""
    checked = 0
    big = [describe(lone_person_scene(a, yaw=y), 96) for a, y in (("waving", 0.3), ("walking", 2.0),
                                                                  ("raising both arms", -1.0), ("crouching", 1.0))]
    small = [render_sample(0, i, RES) for i in person_scenes(4)]
    for slack, scenes in ((0.5, big), (1.5, small)):
        for s in scenes:
            for pose in s["human_poses"]:
                j2d = np.array(pose["joints_2d"])
                assert j2d.shape == (len(JOINT_NAMES), 2)
                assert np.array(pose["joints_3d"]).shape == (len(JOINT_NAMES), 3)
                x0, y0, x1, y1 = pose["amodal_box"]
                res = s["rgb"].shape[0]
                j = j2d[(j2d >= 0).all(1) & (j2d <= res).all(1)]
                assert ((j[:, 0] >= x0 - slack) & (j[:, 0] <= x1 + slack)).all()
                assert ((j[:, 1] >= y0 - slack) & (j[:, 1] <= y1 + slack)).all()
                det = next(d for d in s["det"] if d["instance"] == pose["instance"])
                if det["visible_fraction"] == 1:
                    assert pose["box"] == pose["amodal_box"]
                checked += 1
    assert checked >= 6


def test_pose_3d_joints_project_to_the_2d_joints():
    s = describe(lone_person_scene("pointing"), 64)
    pose = s["human_poses"][0]
    j3 = np.array(pose["joints_3d"])
    fov = s["scene"]["camera"]["fov"]
    u = (j3[:, 0] / -j3[:, 2] / np.tan(fov / 2) + 1) / 2 * 64
    v = (1 - j3[:, 1] / -j3[:, 2] / np.tan(fov / 2)) / 2 * 64
    assert np.allclose(np.stack([u, v], 1), pose["joints_2d"], atol=1e-2)
    rot = np.array(pose["global_orient"]).reshape(3, 3)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-4)


def test_edges():
    for s in samples()[:4]:
        for key in ("canny_edge", "sam_edge"):
            assert set(np.unique(s[key])) <= {0, 255}
        inst = s["instance"].astype(int)
        boundary = np.zeros(inst.shape, bool)
        boundary[:, :-1] |= inst[:, :-1] != inst[:, 1:]
        boundary[:-1] |= inst[:-1] != inst[1:]
        assert (s["sam_edge"][boundary] == 255).all(), "every instance boundary is a SAM edge"
        assert s["canny_edge"].any()


def test_palette():
    for s in samples():
        pal = s["color_palette"]
        assert 1 <= len(pal["colors"]) <= 7 and len(pal["colors"]) == len(pal["weights"])
        assert abs(sum(pal["weights"]) - 1) < 1e-3 and pal["weights"] == sorted(pal["weights"], reverse=True)
    # Two flat colours: k = 2 finds them exactly.
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :20] = (200, 30, 40)
    img[:, 20:] = (10, 90, 250)
    pal = color_palette(img, np.random.default_rng(0), k=2, samples=img.shape[0] * img.shape[1])
    assert pal["colors"] == [[200, 30, 40], [10, 90, 250]]
    assert pal["weights"] == [0.625, 0.375]  # every pixel sampled: exact shares
    with pytest.raises(ValueError, match="palette size"):
        color_palette(img, np.random.default_rng(0), k=8)


def test_metadata_matches_the_maps():
    for s in samples():
        meta = s["metadata"]
        assert meta["original_width"] == meta["original_height"] == RES
        assert meta["walkability"] == pytest.approx((s["semseg"] == FLOOR).mean(), abs=1e-5)
        assert meta["objectness"] == pytest.approx((s["instance"] > 0).mean(), abs=1e-5)
        assert meta["semantic_diversity"] == len(np.unique(s["semseg"]))
        assert 0 <= meta["geometric_complexity"] <= 1 and 0 <= meta["entropy"] <= 8
        assert meta["brightness"] == pytest.approx(s["rgb"].mean(), rel=0.05)
    # A lone flat floor is geometrically simple; a scene of many objects is less so.
    floor_only = render(row_scene([]), 48)
    assert np.allclose(floor_only.normal[floor_only.semseg == FLOOR], floor_only.normal[0, -1], atol=1e-5)
