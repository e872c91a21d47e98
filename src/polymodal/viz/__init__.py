"""polymodal.viz: token ids -> values (`decode_outputs`), a picture of any value (`picture`), grids of inputs and
outputs as PNG (`inputs_outputs_grid`, `tile_grid`).

    values = decode_outputs(ids, tokenizers)                       # modality -> batched values
    kinds = {m: value_kind(m, tokenizers) for m in ids} | {"rgb@64": "rgb"}
    save_png(inputs_outputs_grid({"rgb@64": rgb}, values, kinds), "out.png")

The built-in world's preview (`viz.world`, every stored modality of a few samples: ``polymodal data show``)
colours depth and classes with `colors`, as every other picture.
"""

from .colors import class_colors, colormap, depth_rgb, feature_pca_rgb, normal_rgb, robust_range, semseg_rgb
from .decode import DecodeError, decode_one, decode_outputs, tokenizer_for, value_kind
from .grid import grid_size, inputs_outputs_grid, sample_tiles, save_png, tile_grid
from .pictures import KINDS, draw_boxes, draw_instances, draw_palette, draw_poses, draw_text, picture

__all__ = [
    "KINDS", "DecodeError", "class_colors", "colormap", "decode_one", "decode_outputs", "depth_rgb", "draw_boxes",
    "draw_instances", "draw_palette", "draw_poses", "draw_text", "feature_pca_rgb", "grid_size",
    "inputs_outputs_grid", "normal_rgb", "robust_range", "sample_tiles", "save_png", "semseg_rgb", "tile_grid",
    "tokenizer_for", "value_kind", "picture",
]
