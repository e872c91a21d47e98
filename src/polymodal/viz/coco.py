"""The 134 labels of 4M's semantic segmentation tokenizer (``4M_tokenizers_semseg_4k_224-448``): COCO panoptic.

The tokenizer was trained on COCO's panoptic annotations merged into 133 semantic classes (80 things, then 53
stuff), each id shifted up by one so that label 0 is "no class" (COCO's ignore value 255; the reference's
``SemsegTransform(shift_idx_by_one=True)``, ``COCO_SEMSEG_NUM_CLASSES = 133 + 1``). The reference's demo draws a
decoded map with detectron2's ``coco_2017_val_panoptic`` metadata after subtracting that one again, so label k
(1..133) is the (k-1)-th class of COCO's panoptic category list, in the list's order (category ids 1..200 with
gaps). Names and colours are that list's (cocodataset/panopticapi, ``panoptic_coco_categories.json``).
"""

from __future__ import annotations

UNLABELED = "unlabeled"

# (name, colour) for labels 1..133, in COCO panoptic order: things (isthing 1), then stuff.
_CATEGORIES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("person", (220, 20, 60)), ("bicycle", (119, 11, 32)), ("car", (0, 0, 142)), ("motorcycle", (0, 0, 230)),
    ("airplane", (106, 0, 228)), ("bus", (0, 60, 100)), ("train", (0, 80, 100)), ("truck", (0, 0, 70)),
    ("boat", (0, 0, 192)), ("traffic light", (250, 170, 30)), ("fire hydrant", (100, 170, 30)),
    ("stop sign", (220, 220, 0)), ("parking meter", (175, 116, 175)), ("bench", (250, 0, 30)),
    ("bird", (165, 42, 42)), ("cat", (255, 77, 255)), ("dog", (0, 226, 252)), ("horse", (182, 182, 255)),
    ("sheep", (0, 82, 0)), ("cow", (120, 166, 157)), ("elephant", (110, 76, 0)), ("bear", (174, 57, 255)),
    ("zebra", (199, 100, 0)), ("giraffe", (72, 0, 118)), ("backpack", (255, 179, 240)), ("umbrella", (0, 125, 92)),
    ("handbag", (209, 0, 151)), ("tie", (188, 208, 182)), ("suitcase", (0, 220, 176)), ("frisbee", (255, 99, 164)),
    ("skis", (92, 0, 73)), ("snowboard", (133, 129, 255)), ("sports ball", (78, 180, 255)), ("kite", (0, 228, 0)),
    ("baseball bat", (174, 255, 243)), ("baseball glove", (45, 89, 255)), ("skateboard", (134, 134, 103)),
    ("surfboard", (145, 148, 174)), ("tennis racket", (255, 208, 186)), ("bottle", (197, 226, 255)),
    ("wine glass", (171, 134, 1)), ("cup", (109, 63, 54)), ("fork", (207, 138, 255)), ("knife", (151, 0, 95)),
    ("spoon", (9, 80, 61)), ("bowl", (84, 105, 51)), ("banana", (74, 65, 105)), ("apple", (166, 196, 102)),
    ("sandwich", (208, 195, 210)), ("orange", (255, 109, 65)), ("broccoli", (0, 143, 149)),
    ("carrot", (179, 0, 194)), ("hot dog", (209, 99, 106)), ("pizza", (5, 121, 0)), ("donut", (227, 255, 205)),
    ("cake", (147, 186, 208)), ("chair", (153, 69, 1)), ("couch", (3, 95, 161)), ("potted plant", (163, 255, 0)),
    ("bed", (119, 0, 170)), ("dining table", (0, 182, 199)), ("toilet", (0, 165, 120)), ("tv", (183, 130, 88)),
    ("laptop", (95, 32, 0)), ("mouse", (130, 114, 135)), ("remote", (110, 129, 133)), ("keyboard", (166, 74, 118)),
    ("cell phone", (219, 142, 185)), ("microwave", (79, 210, 114)), ("oven", (178, 90, 62)),
    ("toaster", (65, 70, 15)), ("sink", (127, 167, 115)), ("refrigerator", (59, 105, 106)), ("book", (142, 108, 45)),
    ("clock", (196, 172, 0)), ("vase", (95, 54, 80)), ("scissors", (128, 76, 255)), ("teddy bear", (201, 57, 1)),
    ("hair drier", (246, 0, 122)), ("toothbrush", (191, 162, 208)),
    # stuff
    ("banner", (255, 255, 128)), ("blanket", (147, 211, 203)), ("bridge", (150, 100, 100)),
    ("cardboard", (168, 171, 172)), ("counter", (146, 112, 198)), ("curtain", (210, 170, 100)),
    ("door-stuff", (92, 136, 89)), ("floor-wood", (218, 88, 184)), ("flower", (241, 129, 0)),
    ("fruit", (217, 17, 255)), ("gravel", (124, 74, 181)), ("house", (70, 70, 70)), ("light", (255, 228, 255)),
    ("mirror-stuff", (154, 208, 0)), ("net", (193, 0, 92)), ("pillow", (76, 91, 113)), ("platform", (255, 180, 195)),
    ("playingfield", (106, 154, 176)), ("railroad", (230, 150, 140)), ("river", (60, 143, 255)),
    ("road", (128, 64, 128)), ("roof", (92, 82, 55)), ("sand", (254, 212, 124)), ("sea", (73, 77, 174)),
    ("shelf", (255, 160, 98)), ("snow", (255, 255, 255)), ("stairs", (104, 84, 109)), ("tent", (169, 164, 131)),
    ("towel", (225, 199, 255)), ("wall-brick", (137, 54, 74)), ("wall-stone", (135, 158, 223)),
    ("wall-tile", (7, 246, 231)), ("wall-wood", (107, 255, 200)), ("water-other", (58, 41, 149)),
    ("window-blind", (183, 121, 142)), ("window-other", (255, 73, 97)), ("tree-merged", (107, 142, 35)),
    ("fence-merged", (190, 153, 153)), ("ceiling-merged", (146, 139, 141)), ("sky-other-merged", (70, 130, 180)),
    ("cabinet-merged", (134, 199, 156)), ("table-merged", (209, 226, 140)), ("floor-other-merged", (96, 36, 108)),
    ("pavement-merged", (96, 96, 96)), ("mountain-merged", (64, 170, 64)), ("grass-merged", (152, 251, 152)),
    ("dirt-merged", (208, 229, 228)), ("paper-merged", (206, 186, 171)), ("food-other-merged", (152, 161, 64)),
    ("building-other-merged", (116, 112, 0)), ("rock-merged", (0, 114, 143)), ("wall-other-merged", (102, 102, 156)),
    ("rug-merged", (250, 141, 255)),
)

# Label -> name / colour, label 0 first (drawn black: no class, as detectron2 leaves it undrawn).
COCO_SEMSEG_CLASSES: tuple[str, ...] = (UNLABELED, *(name for name, _ in _CATEGORIES))
COCO_SEMSEG_COLORS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), *(color for _, color in _CATEGORIES))
NUM_THINGS = 80
