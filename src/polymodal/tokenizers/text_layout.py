"""4M's fixed text-token layout: the ids every 4M text vocabulary shares, whatever it was trained on.

==========  ==============================  ====================================================================
ids         tokens                          use
==========  ==============================  ====================================================================
0..3        ``[PAD] [UNK] [SOS] [EOS]``     padding, unknown piece, (unused by 4M's data), end of sequence
4..203      ``[S_0]`` .. ``[S_199]``        span-masking sentinels (4M uses ``[S_1]`` onwards)
204..1203   ``v0=0`` .. ``v0=999``          coordinate / value tokens, axis 0 (box xmin, metadata bins, ...)
1204..2203  ``v1=0`` .. ``v1=999``          axis 1 (box ymin, metadata field ids, palette size, codes >= 512)
2204..3203  ``v2=0`` .. ``v2=999``          axis 2 (box xmax)
3204..4203  ``v3=0`` .. ``v3=999``          axis 3 (box ymax)
4204..4283  the 80 COCO class names         one token each, e.g. ``wine glass`` (matched after lower-casing)
4284..      extra class names (ours only)   a vocabulary trained here may add single-token classes
then        WordPiece pieces                learned from the corpus
==========  ==============================  ====================================================================

All of these are "added tokens" of the HF ``tokenizers`` model: sentinels and coordinates match only as whole words
and case-sensitively, class names as whole words after normalization. Everything else is lower-cased BERT
normalization, the BERT pre-tokenizer and WordPiece with ``##`` continuation pieces.
"""

from __future__ import annotations

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[SOS]", "[EOS]")
PAD, UNK, SOS, EOS = 0, 1, 2, 3
SENTINEL_BASE = 4  # [S_k] = SENTINEL_BASE + k
NUM_SENTINELS = 200
COORD_BASE = SENTINEL_BASE + NUM_SENTINELS  # 204: v0=0
COORD_AXES = 4
COORD_BINS = 1000  # v{axis}=0 .. v{axis}=999
CLASS_BASE = COORD_BASE + COORD_AXES * COORD_BINS  # 4204: the first COCO class name

# The 80 COCO classes in the order of the official vocabulary (alphabetical), ids CLASS_BASE + i.
COCO_CLASSES = (
    "airplane", "apple", "backpack", "banana", "baseball bat", "baseball glove", "bear", "bed", "bench", "bicycle",
    "bird", "boat", "book", "bottle", "bowl", "broccoli", "bus", "cake", "car", "carrot", "cat", "cell phone",
    "chair", "clock", "couch", "cow", "cup", "dining table", "dog", "donut", "elephant", "fire hydrant", "fork",
    "frisbee", "giraffe", "hair drier", "handbag", "horse", "hot dog", "keyboard", "kite", "knife", "laptop",
    "microwave", "motorcycle", "mouse", "orange", "oven", "parking meter", "person", "pizza", "potted plant",
    "refrigerator", "remote", "sandwich", "scissors", "sheep", "sink", "skateboard", "skis", "snowboard", "spoon",
    "sports ball", "stop sign", "suitcase", "surfboard", "teddy bear", "tennis racket", "tie", "toaster", "toilet",
    "toothbrush", "traffic light", "train", "truck", "tv", "umbrella", "vase", "wine glass", "zebra",
)
NUM_FIXED = CLASS_BASE + len(COCO_CLASSES)  # 4284 ids shared by every 4M text vocabulary

# The words 4M's serializers write (human poses, SAM instances). Each is one WordPiece of the official vocabulary;
# a vocabulary trained here gets them as whole words too, so that a person stays 39 tokens (7 fit human_poses).
SERIALIZER_WORDS = ("human", "pose", "global", "camera", "shape", "none", "point", "polygon")


def sentinel_token(k: int) -> str:
    return f"[S_{k}]"


def coord_token(axis: int, value: int) -> str:
    """``v{axis}={value}``, e.g. ``coord_token(3, 999) == "v3=999"``."""
    return f"v{axis}={value}"


def coord_id(axis: int, value: int) -> int:
    """The id of ``v{axis}={value}`` (fixed by the layout, no tokenizer needed)."""
    if not (0 <= axis < COORD_AXES and 0 <= value < COORD_BINS):
        raise ValueError(f"no coordinate token v{axis}={value}: axes are 0..{COORD_AXES - 1}, "
                         f"values 0..{COORD_BINS - 1}")
    return COORD_BASE + axis * COORD_BINS + value


def is_coord_id(i: int) -> bool:
    return COORD_BASE <= i < CLASS_BASE


def coord_of_id(i: int) -> tuple[int, int]:
    """(axis, value) of a coordinate id."""
    return divmod(i - COORD_BASE, COORD_BINS)


def fixed_tokens() -> list[str]:
    """The token strings of ids 0 .. NUM_FIXED - 1, in id order."""
    return (list(SPECIAL_TOKENS) + [sentinel_token(k) for k in range(NUM_SENTINELS)]
            + [coord_token(a, v) for a in range(COORD_AXES) for v in range(COORD_BINS)] + list(COCO_CLASSES))


def id_to_fixed_token(i: int) -> str:
    """The token string of a fixed id (0 .. NUM_FIXED - 1) without a tokenizer."""
    if i < SENTINEL_BASE:
        return SPECIAL_TOKENS[i]
    if i < COORD_BASE:
        return sentinel_token(i - SENTINEL_BASE)
    if i < CLASS_BASE:
        return coord_token(*coord_of_id(i))
    return COCO_CLASSES[i - CLASS_BASE]


def layout_mismatch(id_to_token) -> str | None:
    """None if a vocabulary follows the layout, else a message naming the first id that does not.

    ``id_to_token``: a function id -> token string or None (``tokenizers.Tokenizer.id_to_token``).
    """
    for i, want in enumerate(fixed_tokens()):
        got = id_to_token(i)
        if got != want:
            return f"id {i} is {got!r}, 4M's layout has {want!r} there"
    return None
