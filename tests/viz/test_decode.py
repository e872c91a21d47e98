"""decode_outputs: every kind of modality back to values through its tokenizer, and clear errors."""

from __future__ import annotations

import pytest
import torch

from polymodal import modalities
from polymodal.tokenizers.serializers import (
    Box,
    BoxSerializer,
    Instance,
    InstanceSerializer,
    MetadataSerializer,
    PaletteSerializer,
    PersonPose,
    PoseSerializer,
    QueryPoint,
)
from polymodal.tokenizers.serializers.metadata import field
from polymodal.tokenizers.text_layout import PAD
from polymodal.viz import DecodeError, decode_outputs, value_kind

from .helpers import mlp, text_tokenizer, vqvae

BOXES = [[Box(0.1, 0.2, 0.5, 0.6, "sphere"), Box(0.0, 0.0, 0.3, 1.0, "torus")], []]
METADATA = [{"original_width": 64, "n_humans": 2, "brightness": 128.0}, {"walkability": 0.5}]
PALETTES = [[(255, 128, 0), (10, 20, 30)], [(1, 2, 3)]]
POSES = [[PersonPose((0.1, 0.2, 0.3, 0.9), tuple(range(0, 1024, 130)), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                     (0.5, 0.0, 3.0), (0.0,) * 10)], []]
INSTANCES = [[QueryPoint(10, 20, (Instance((5, 8, 40, 50), tuple(range(0, 1024, 64))),)), QueryPoint(200, 3)],
             [QueryPoint(0, 0)]]


def padded(serializer, values) -> torch.Tensor:
    """(B, max_length) ids of each value + [EOS], padded with [PAD] as a model's output would be."""
    tok = text_tokenizer()
    rows = [serializer.encode(v, tok) for v in values]
    out = torch.full((len(rows), serializer.max_tokens), PAD, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, :len(r)] = torch.tensor(r)
    return out


def test_serialized_sequences_round_trip():
    tok = text_tokenizer()
    cases = {"det": (BoxSerializer(), BOXES), "metadata": (MetadataSerializer(), METADATA),
             "color_palette": (PaletteSerializer(), PALETTES), "human_poses": (PoseSerializer(), POSES),
             "sam_instance": (InstanceSerializer(), INSTANCES)}
    ids = {name: padded(s, v) for name, (s, v) in cases.items()}
    ids["caption"] = tok.encode(["a red sphere near the person", ""])
    out = decode_outputs(ids, {"text": tok})
    assert list(out) == list(ids)
    assert out["caption"] == ["a red sphere near the person", ""]
    assert out["color_palette"] == PALETTES
    assert out["sam_instance"] == INSTANCES
    assert [[p.pose for p in row] for row in out["human_poses"]] == [[p.pose for p in row] for row in POSES]
    binned = [{k: field(k).from_bin(field(k).to_bin(v)) for k, v in m.items()} for m in METADATA]
    assert out["metadata"] == binned and binned[0]["original_width"] == 64
    got = sorted((b.label, *b.coords) for b in out["det"][0])
    want = sorted((b.label, *b.coords) for b in BOXES[0])
    assert [g[0] for g in got] == [w[0] for w in want]
    assert torch.allclose(torch.tensor([g[1:] for g in got]), torch.tensor([w[1:] for w in want]), atol=0.5 / 999)
    assert out["det"][1] == []
    for name in ids:
        assert value_kind(name, {"text": tok}) == name


def test_image_and_vector_tokens_decode_through_their_tokenizers():
    toks = {"tok_rgb@16": vqvae("rgb"), "tok_depth@16": vqvae("depth"), "tok_semseg@16": vqvae("semseg", channels=5),
            "tok_feature@16": vqvae("feature", channels=6), "tok_vec_global": mlp(12)}
    g = torch.Generator().manual_seed(0)
    ids = {name: torch.randint(0, t.vocab_size, (3, t.num_tokens), generator=g) for name, t in toks.items()}
    out = decode_outputs(ids, toks)
    assert out["tok_rgb@16"].shape == (3, 3, 16, 16) and 0 <= out["tok_rgb@16"].min() <= out["tok_rgb@16"].max() <= 1
    assert out["tok_depth@16"].shape == (3, 16, 16) and out["tok_depth@16"].min() >= 0
    assert out["tok_semseg@16"].shape == (3, 16, 16) and out["tok_semseg@16"].dtype == torch.int64
    assert out["tok_feature@16"].shape == (3, 6, 16, 16)
    assert out["tok_vec_global"].shape == (3, 12)
    for name, t in toks.items():
        torch.testing.assert_close(out[name], t.decode(ids[name]))
    assert [value_kind(n, toks) for n in toks] == ["rgb", "depth", "semseg", "feature", "vector"]
    # A vector round trip: the ids the tokenizer gives decode to what the tokenizer decodes them to.
    vec = torch.randn(2, 12, generator=g)
    again = decode_outputs({"tok_vec_global": toks["tok_vec_global"].encode(vec)}, toks)["tok_vec_global"]
    torch.testing.assert_close(again, toks["tok_vec_global"].decode(toks["tok_vec_global"].encode(vec)))


def test_grid_shaped_ids_are_accepted_for_image_tokens():
    tok = vqvae("depth")
    ids = torch.randint(0, 32, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    out = decode_outputs({"tok_depth@16": ids}, {"tok_depth@16": tok})["tok_depth@16"]
    torch.testing.assert_close(out, tok.decode(ids.reshape(2, 16)))


def test_bad_modalities_say_what_is_wrong():
    tok = text_tokenizer()
    with pytest.raises(DecodeError, match="unknown modality 'tok_dpeth@224'.*tok_depth@224"):
        decode_outputs({"tok_dpeth@224": torch.zeros(1, 196, dtype=torch.long)}, {})
    with pytest.raises(DecodeError, match="no tokenizer for modality 'caption'.*'text'"):
        decode_outputs({"caption": torch.zeros(1, 256, dtype=torch.long)}, {"tok_depth@16": vqvae("depth")})
    with pytest.raises(DecodeError, match="no tokenizer for modality 'tok_depth@224'"):
        decode_outputs({"tok_depth@224": torch.zeros(1, 196, dtype=torch.long)}, {"text": tok})
    with pytest.raises(DecodeError, match="input only"):
        decode_outputs({"rgb@224": torch.zeros(1, 3, 224, 224)}, {"text": tok})
    with pytest.raises(DecodeError, match="needs a TextTokenizer"):
        decode_outputs({"det": torch.zeros(1, 256, dtype=torch.long)}, {"det": vqvae("rgb")})
    with pytest.raises(ValueError, match="batched ids"):
        decode_outputs({"caption": torch.zeros(256, dtype=torch.long)}, {"text": tok})
    # Every modality is checked before anything is decoded.
    assert modalities.is_registered("caption")
    with pytest.raises(DecodeError, match="tok_nothing"):
        decode_outputs({"caption": tok.encode(["a"]), "tok_nothing": torch.zeros(1, 4, dtype=torch.long)},
                       {"text": tok})
