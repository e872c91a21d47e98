"""The caption parser recovers exactly what the world's captions say, and the scores react to mistakes."""

from __future__ import annotations

from collections import Counter

import numpy as np

from polymodal.data.world import render_sample
from polymodal.eval.captions import caption_scores, parse_caption, scene_objects


def test_parser_recovers_counts_colors_and_classes_of_50_random_scenes():
    rng = np.random.default_rng(0)
    for seed, index in zip(rng.integers(0, 1000, 50), rng.integers(0, 10**6, 50)):
        s = render_sample(int(seed), int(index), 32)
        got = parse_caption(s["caption"])
        assert got.count == len(s["det"]), s["caption"]
        assert Counter(got.objects) == Counter(scene_objects(s["det"])), s["caption"]
        assert not got.unparsed
        shiny = sorted(d["material"] == "shiny" for d in s["det"] if d["class"] != "person")
        assert sorted(sh for sh, o in zip(got.shiny, got.objects) if o[2] != "person") == shiny


def test_grammar_cases_and_wordpiece_spacing():
    text = ("A room with pale blue walls and a checkered floor. There are FOUR objects : two large shiny red tori , "
            "a person in blue raising both arms and a small green cube . The small green cube is to the left of the "
            "person in blue.")
    got = parse_caption(text)
    assert got.count == 4 and not got.unparsed
    assert Counter(got.objects) == Counter({("large", "red", "torus"): 2, (None, "blue", "person"): 1,
                                            ("small", "green", "cube"): 1})
    assert parse_caption("An open checkered floor. There is one object: a small white cone.").objects == (
        ("small", "white", "cone"),)
    assert parse_caption("An open checkered floor. There are no objects in view.").count == 0


def test_broken_captions_are_read_leniently():
    got = parse_caption("There are three objects: a small red blob, a large blue sphere and")
    assert got.count == 3 and got.objects == (("large", "blue", "sphere"),) and got.unparsed == ("a small red blob",)
    assert parse_caption("a red sphere somewhere").count is None
    assert parse_caption("").objects == ()


def test_scores_perfect_and_wrong_captions(scenes):
    dets = [s["det"] for s in scenes]
    perfect = caption_scores([s["caption"] for s in scenes], dets)
    assert all(v == 1.0 for v in perfect.values())
    det = [{"class": "cube", "color": "red", "size": "small"}, {"class": "cube", "color": "red", "size": "small"},
           {"class": "person", "color": "blue", "size": "large"}]
    m = caption_scores(["There are two objects: a small red cube and a large red sphere."], [det])
    assert m["count_acc"] == 0.0
    assert m["color_precision"] == 1.0 and m["color_recall"] == 2 / 3
    assert m["class_precision"] == 0.5 and m["class_recall"] == 1 / 3
    assert m["object_precision"] == 0.5 and m["object_f1"] == 0.4
