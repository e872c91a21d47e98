"""Serializers: 4M's token formats of structured modalities, written with the text tokenizer and read back.

==============  =====================  =====================================================================
modality        serializer             one record
==============  =====================  =====================================================================
det             `BoxSerializer`        ``v0=xmin v1=ymin v2=xmax v3=ymax <class>`` (0..999 bins)
metadata        `MetadataSerializer`   ``v1=<field id> v0=<bin>``
color_palette   `PaletteSerializer`    ``v1=<n> v0=R v0=G v0=B ...``
human_poses     `PoseSerializer`       ``human <box> pose <8 codes> global <9> camera <3> shape <10>``
sam_instance    `InstanceSerializer`   ``point v0=y v1=x`` + ``none`` or ``polygon <box> <16 codes>`` ...
==============  =====================  =====================================================================

Each has ``to_text(value)`` (4M's string), ``encode(value, tokenizer)`` (its ids + [EOS], fitted to the modality's
length), ``decode(ids, tokenizer, strict=False)`` (lenient unless strict) and the ``*_from_world`` adapters for the
built-in world's stored values. `SERIALIZERS` maps the modality name to a default instance.
"""

from __future__ import annotations

from .boxes import Box, BoxSerializer, boxes_from_world, boxes_to_pixels
from .common import SerializationError, Serializer
from .instances import Instance, InstanceSerializer, QueryPoint, instances_from_world, sample_query_points
from .metadata import FIELDS, MetadataField, MetadataSerializer, metadata_from_world
from .palette import PaletteSerializer, palette_from_world
from .poses import PersonPose, PoseSerializer, poses_from_world

SERIALIZERS: dict[str, Serializer] = {
    s.modality: s for s in (BoxSerializer(), MetadataSerializer(), PaletteSerializer(), PoseSerializer(),
                            InstanceSerializer())
}

__all__ = [
    "FIELDS", "SERIALIZERS", "Box", "BoxSerializer", "Instance", "InstanceSerializer", "MetadataField",
    "MetadataSerializer", "PaletteSerializer", "PersonPose", "PoseSerializer", "QueryPoint", "SerializationError",
    "Serializer", "boxes_from_world", "boxes_to_pixels", "instances_from_world", "metadata_from_world",
    "palette_from_world", "poses_from_world", "sample_query_points",
]
