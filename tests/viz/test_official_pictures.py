"""Pictures and files of the released 4M-21 outputs the tiny fixture model lacks, from small synthetic values:
relative depth, COCO panoptic segmentation with its legend, PCA feature maps, SAM instance masks, palette
swatches, poses as SMPL parameters (JSON), and which tokenizer gives which picture kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.pipeline.official import check_fit
from polymodal.pipeline.official_values import smpl_people
from polymodal.pipeline.outputs import Outputs
from polymodal.tokenizers.ml4m.folder import load_official_tokenizer
from polymodal.tokenizers.ml4m.vqvae import OfficialVQVAE, OfficialVQVAEConfig
from polymodal.tokenizers.serializers import Instance, PersonPose, QueryPoint
from polymodal.tokenizers.text import TextTokenizer
from polymodal.viz import picture, value_kind
from polymodal.viz.coco import COCO_SEMSEG_CLASSES, COCO_SEMSEG_COLORS, NUM_THINGS
from polymodal.viz.official import MASK_ALPHA, SamInstances, relative_depth_rgb, semseg_classes

from ..conftest import fixtures_dir, single_thread

one_thread = pytest.fixture(autouse=True)(single_thread)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.2126, 0.7152, 0.0722])


def test_relative_depth_is_bright_near_and_strays_do_not_flatten_it():
    d = np.repeat(np.linspace(-1.5, 2.0, 64)[:, None], 64, axis=1)  # standardized: top near, bottom far
    clean = luminance(relative_depth_rgb(d)).mean(1)
    assert np.all(np.diff(clean) <= 0) and clean[0] - clean[-1] > 150
    stray = d.copy()
    stray[::9, ::7] = -40.0  # a few wild values, as a decode of garbage tokens holds
    kept = np.ones_like(d, bool)
    kept[::9, ::7] = False
    lum = luminance(relative_depth_rgb(stray))
    near, far = lum[0][kept[0]].mean(), lum[-1][kept[-1]].mean()
    assert near - far > 150  # the real ramp keeps (nearly) the whole colour range


def test_coco_labels_are_the_text_tokenizers_classes_then_stuff():
    assert len(COCO_SEMSEG_CLASSES) == len(COCO_SEMSEG_COLORS) == 134 and COCO_SEMSEG_CLASSES[0] == "unlabeled"
    assert len(set(COCO_SEMSEG_CLASSES)) == 134
    # 4M's text tokenizer holds the 80 COCO detection classes as single tokens (ids 4204..4283): an independent
    # list of the same names, which labels 1..80 must be.
    text = TextTokenizer.from_pretrained(fixtures_dir("ml4m-text-tokenizer", "text_tokenizer_4m_wordpiece_30k.json"))
    coco = {text.decode_piece([i]) for i in range(4204, 4284)}
    assert set(COCO_SEMSEG_CLASSES[1:NUM_THINGS + 1]) == coco
    assert not coco & set(COCO_SEMSEG_CLASSES[NUM_THINGS + 1:])  # stuff after the things


def test_segmentation_picture_colours_each_label_and_lists_the_classes_largest_first():
    labels = np.zeros((32, 32), np.int64)
    labels[:, :20] = 1  # person, 62.5%
    labels[:8, 20:] = 119  # ceiling-merged: 8 x 12 pixels, 9.4%; the rest (24 x 12, 28.1%) unlabeled
    assert [(k, f) for k, _, f in semseg_classes(labels)] == [(1, 0.625), (0, 0.28125), (119, 0.09375)]
    assert semseg_classes(labels)[2][1] == "ceiling-merged" and COCO_SEMSEG_CLASSES[133] == "rug-merged"
    img = np.asarray(picture("coco_semseg", torch.as_tensor(labels), size=64))
    assert img.shape[1] == 64 and img.shape[0] > 64 + 3 * 8  # the legend under the map, one row a class
    assert tuple(img[32, 10]) == COCO_SEMSEG_COLORS[1] and tuple(img[2, 60]) == COCO_SEMSEG_COLORS[119]
    assert tuple(img[40, 60]) == (0, 0, 0)
    legend = img[64:]
    rows = [tuple(r) for r in legend[:, 5] if tuple(r) != (255, 255, 255)]  # the swatch column, top to bottom
    firsts = list(dict.fromkeys(c for c in rows if c in {COCO_SEMSEG_COLORS[k] for k in (0, 1, 119)}))
    assert firsts == [COCO_SEMSEG_COLORS[1], COCO_SEMSEG_COLORS[0], COCO_SEMSEG_COLORS[119]]
    with pytest.raises(ValueError, match="labels from 0 to 134, expected 0 to 133"):
        picture("coco_semseg", torch.tensor([[0, 134]]), size=8)


def test_feature_pca_follows_the_main_direction():
    # An 8-channel 4 x 4 map varying along x in one channel mix and along y (less) in an orthogonal one.
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(8, generator=g), torch.randn(8, generator=g)
    v = v - (v @ u) / (u @ u) * u
    xs, ys = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="xy")
    fmap = 3 * u[:, None, None] * xs + v[:, None, None] * ys
    img = np.asarray(picture("feature", fmap, size=4)).astype(int)
    red = img[..., 0]
    steps = np.diff(red, axis=1)
    assert np.all(steps > 0) or np.all(steps < 0)  # the first component runs along x
    assert np.all(red == red[0:1])  # the first component ignores y: every row alike


def test_sam_instances_are_drawn_as_masks_in_their_boxes_and_saved_as_json(tmp_path):
    ids = torch.zeros(224, 224, dtype=torch.long)
    ids[40:100, 60:140] = 1
    value = SamInstances(points=[QueryPoint(x=80, y=50, instances=(Instance((60, 40, 140, 100), tuple(range(16))),)),
                                 QueryPoint(x=10, y=200)],
                         ids=ids, boxes=torch.tensor([[60.0, 40.0, 140.0, 100.0]]))
    bg = torch.full((3, 224, 224), 0.5)
    img = np.asarray(picture("sam_masks", value, size=224, background=bg)).astype(int)
    assert tuple(img[5, 200]) == (128, 128, 128)  # outside: the image itself
    inside = img[70, 100]
    assert not np.array_equal(inside, [128, 128, 128])
    colour = (inside - (1 - MASK_ALPHA) * 128) / MASK_ALPHA  # the instance colour behind the blend
    assert np.all((colour > -2) & (colour < 257))
    assert tuple(img[40, 100]) == tuple(img[99, 100])  # the box outline: one colour on both edges
    out = Outputs({"sam_instance": torch.zeros(1, 4, dtype=torch.long)}, {"sam_instance": [value]},
                  {"sam_instance": "sam_masks"}, record_pictures=True)
    out.save(tmp_path)
    record = json.loads((tmp_path / "sam_instance.json").read_text())
    assert record["kept"] == [[60.0, 40.0, 140.0, 100.0]] and record["points"][0]["instances"][0]["codes"][3] == 3
    assert Image.open(tmp_path / "sam_instance.png").size == (224, 224)


def pose_tokenizer() -> OfficialVQVAE:
    """An untrained pose tokenizer of the released layout: 8 Memcodes codebooks of 1024 -> 207 values."""
    torch.manual_seed(0)
    cfg = OfficialVQVAEConfig(values="vector", in_channels=207, out_channels=207, image_size=1, patch_size=1,
                              enc_dim=16, enc_depth=1, dec_dim=16, dec_depth=1, latent_dim=8, codebook_size=1024,
                              family="mlp", enc_hidden=32, dec_hidden=32, quantizer="memcodes", num_codebooks=8,
                              name="human_poses")
    return OfficialVQVAE(cfg).eval()


def test_poses_become_smpl_parameters_in_json(tmp_path):
    from polymodal.modalities import get

    tok = pose_tokenizer()
    check_fit("human_poses", tok, get("human_poses"))  # the released pose tokenizer's layout fits its domain
    orient = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    people = [PersonPose((0.1, 0.2, 0.5, 0.9), (3, 700, 0, 1, 2, 1023, 5, 6), tuple(orient), (0.9, 0.1, -0.2),
                         tuple(np.linspace(-1, 1, 10))), PersonPose((0.6, 0.1, 0.9, 0.8), (0,) * 8, tuple(orient),
                                                                    (1.0, 0.0, 0.0), (0.0,) * 10)]
    smpl = smpl_people(people, tok)
    expected = tok.decode(torch.tensor([list(p.pose) for p in people])).reshape(2, 23, 3, 3)
    assert torch.allclose(torch.tensor(smpl[0].body_pose), expected[0]) and len(smpl[1].body_pose) == 23
    assert smpl[0].global_orient == [[1, 0, 0], [0, 1, 0], [0, 0, 1]] and smpl[0].pose_codes[1] == 700
    out = Outputs({"human_poses": torch.zeros(1, 4, dtype=torch.long)}, {"human_poses": [smpl]},
                  {"human_poses": "smpl_poses"}, record_pictures=True)
    out.save(tmp_path)
    saved = json.loads((tmp_path / "human_poses.json").read_text())
    assert [p["box"] for p in saved] == [[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]]
    assert np.allclose(saved[0]["body_pose"], expected[0].numpy(), atol=1e-6) and len(saved[0]["betas"]) == 10
    img = np.asarray(Image.open(tmp_path / "human_poses.png"))
    assert img.shape == (224, 224, 3) and len(np.unique(img.reshape(-1, 3), axis=0)) > 1  # boxes drawn
    assert smpl_people(people, None)[0].body_pose is None  # without the pose tokenizer: codes only


def test_palette_swatches_are_saved_as_json_and_bands(tmp_path):
    palette = [(255, 0, 0), (0, 0, 255)]
    out = Outputs({"color_palette": torch.zeros(1, 4, dtype=torch.long)}, {"color_palette": [palette]},
                  {"color_palette": "color_palette"}, record_pictures=True)
    out.save(tmp_path)
    assert json.loads((tmp_path / "color_palette.json").read_text()) == [[255, 0, 0], [0, 0, 255]]
    img = np.asarray(Image.open(tmp_path / "color_palette.png"))
    assert tuple(img[10, 10]) == (255, 0, 0) and tuple(img[-10, 10]) == (0, 0, 255)


def test_released_tokenizers_give_their_picture_kinds():
    semseg = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "semseg"), name="tok_semseg@224")
    clip = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", "clip"), name="tok_clip@224")
    glob = load_official_tokenizer(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global"))
    assert value_kind("tok_semseg@224", {"tok_semseg@224": semseg}) == "coco_semseg"
    assert value_kind("tok_clip@224", {"tok_clip@224": clip}) == "feature"
    assert value_kind("tok_dinov2_global", {"tok_dinov2_global": glob}) == "vector"
    labels = semseg.decode(torch.zeros(1, semseg.num_tokens, dtype=torch.long))
    assert labels.shape == (1, 32, 32) and 0 <= int(labels.min()) and int(labels.max()) < 134
    assert picture("coco_semseg", labels[0], size=64).width == 64
