"""The built-in multimodal world: procedural 3D scenes whose every modality comes exactly from the renderer.

    from polymodal.data.world import render_sample, synthesize
    sample = render_sample(seed=0, index=12, res=64)     # dict: rgb, depth, normal, semseg, instance, det, ...
    synthesize("data/world64", n=10_000, res=64, seed=0, workers=2)   # WebDataset shards + dataset.json

Sample ``i`` of world ``seed`` depends on ``(seed, i)`` only. Files: `scene` (sampling scene descriptions),
`person` (the articulated body), `shapes` (ray intersections), `solids` (objects -> primitives), `render` (ray
casting and shading), `labels` and `caption` (derived modalities), `sample` (one sample, every modality),
`codec` (bytes of each modality), `store` (shards: write, resume, read) (its PNG preview grid: `viz.world`),
`text_embed` (caption embeddings from an offline sentence encoder, the optional extra ``polymodal[text]``;
importing the package registers their modalities, ``minilm_global`` and ``minilm_caption``, and loads nothing).
"""

from .sample import IMAGE_KEYS, MODALITIES, VALUE_KEYS, describe, render_sample
from .scene import COLOR_NAMES, OBJECT_CLASSES, SEMSEG_CLASSES, sample_scene
from .store import ShardError, iter_samples, read_info, read_sample, read_shard, synthesize
from .text_embed import TEXT_KEYS, SentenceEncoder

__all__ = [
    "COLOR_NAMES", "IMAGE_KEYS", "MODALITIES", "OBJECT_CLASSES", "SEMSEG_CLASSES", "TEXT_KEYS", "VALUE_KEYS",
    "SentenceEncoder", "ShardError", "describe", "iter_samples", "read_info", "read_sample", "read_shard",
    "render_sample", "sample_scene", "synthesize",
]
