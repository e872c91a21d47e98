"""Pseudo-labeling real photos (scikit-image's bundled ones), bad inputs, and the Hugging Face pipeline adapter on
tiny randomly initialized models built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from polymodal.config import MaskingConfig
from polymodal.data.labelers import ImageRefused, label_images, load_image
from polymodal.data.loader import TokenLoader
from polymodal.data.pretokenize import pretokenize
from polymodal.data.readers import iter_shards
from polymodal.data.sources import TokenSource
from polymodal.modalities import get as get_modality

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "colorwheel")


def photo_folder(root, n: int):
    """``n`` distinct images cut from scikit-image's colour photos: crops at several scales and places."""
    data = pytest.importorskip("skimage.data")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = getattr(data, PHOTOS[i % len(PHOTOS)])()
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        ext = ".png" if i % 3 == 0 else ".jpg"
        Image.fromarray(np.ascontiguousarray(img[y:y + s, x:x + s, :3])).save(root / f"photo_{i:03d}{ext}")
    return root


def test_bad_inputs_are_converted_or_refused_with_the_file_name(tmp_path):
    d = photo_folder(tmp_path / "img", 3)
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(d / "gray.png")
    Image.fromarray(np.zeros((50, 50, 4), np.uint8)).save(d / "rgba.png")
    Image.fromarray((np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)).save(d / "deep16.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "tiny.png")
    (d / "corrupt.jpg").write_bytes(b"not an image at all")
    good = (d / "photo_001.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    for name in ("gray.png", "rgba.png", "deep16.png"):
        rgb, _ = load_image(d / name, 32)
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    with pytest.raises(ImageRefused, match="tiny.png"):
        load_image(d / "tiny.png", 32)
    info = label_images(d, tmp_path / "ds", labelers=["canny", "palette", "metadata"], res=32, shard_size=4)
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert {p["file"] for p in report["skipped"]} == {"corrupt.jpg", "truncated.jpg", "tiny.png"}
    assert info["count"] == 6 and info["skipped"] == 3 and report["written"] == 6
    assert [lab["name"] for lab in info["labelers"]] == ["canny", "palette", "metadata"]
    assert all(lab["version"] for lab in info["labelers"])


def test_labeled_real_photos_are_tokenized_and_read_by_the_loader(tmp_path):
    import torch

    from polymodal.tokenizers import ViTVQVAE
    from polymodal.tokenizers.vqvae import VQVAEConfig

    photos = photo_folder(tmp_path / "photos", 24)
    info = label_images(photos, tmp_path / "ds", labelers=["canny", "palette", "metadata"], res=32, shard_size=10,
                        workers=2)
    assert info["count"] == 24 and len(info["shards"]) == 3
    samples = list(iter_shards(tmp_path / "ds"))
    assert len(samples) == 24 and samples[0]["rgb"].shape == (32, 32, 3)
    assert set(samples[0]["canny_edge"].ravel().tolist()) <= {0, 255} and samples[0]["metadata"]["entropy"] > 0
    # a rerun finds everything done
    assert label_images(photos, tmp_path / "ds", labelers=["canny", "palette", "metadata"], res=32,
                        shard_size=10)["count"] == 24
    torch.manual_seed(0)
    tiny = dict(image_size=32, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1, codebook_size=32)
    ViTVQVAE(VQVAEConfig(values="rgb", name="tok_rgb@lab32", **tiny)).save_pretrained(tmp_path / "t_rgb")
    ViTVQVAE(VQVAEConfig(values="edge", name="tok_edge@lab32", **tiny)).save_pretrained(tmp_path / "t_edge")
    pretokenize(str(tmp_path / "ds"), {"rgb": str(tmp_path / "t_rgb"), "canny_edge": str(tmp_path / "t_edge")},
                tmp_path / "tok", crops=2)
    src = TokenSource(tmp_path / "tok")
    mods = {n: get_modality(n) for n in ("tok_rgb@lab32", "tok_edge@lab32")}
    batch = TokenLoader([src], mods=mods, masking=MaskingConfig(num_input_tokens=8, num_target_tokens=8),
                        batch_size=8).take(1)[0]
    assert batch["tok_rgb@lab32"].values.shape == (8, 16) and int(batch["tok_rgb@lab32"].is_input.sum()) > 0


def test_import_makes_an_rgb_only_dataset(tmp_path):
    from polymodal.cli import main

    photos = photo_folder(tmp_path / "photos", 4)
    assert main(["data", "import", "--images", str(photos), "--out", str(tmp_path / "ds"), "--res", "32",
                 "--quiet"]) == 0
    samples = list(iter_shards(tmp_path / "ds"))
    assert [sorted(k for k in s if k != "__key__") for s in samples] == [["file", "rgb"]] * 4


# ------------------------------------------------------------------------------- Hugging Face pipelines


def tiny_hf_models(root):
    transformers = pytest.importorskip("transformers")
    from transformers import (
        GLPNConfig,
        GLPNForDepthEstimation,
        GLPNImageProcessor,
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    transformers.set_seed(0)
    small = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                 num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2])
    seg = SegformerForSemanticSegmentation(SegformerConfig(**small, decoder_hidden_size=16, num_labels=3,
                                                           id2label={0: "sky", 1: "wall", 2: "thing"},
                                                           label2id={"sky": 0, "wall": 1, "thing": 2}))
    seg.save_pretrained(root / "seg")
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "seg")
    depth = GLPNForDepthEstimation(GLPNConfig(**small, decoder_hidden_size=8))
    depth.save_pretrained(root / "depth")
    GLPNImageProcessor().save_pretrained(root / "depth")
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32))
    vit.save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    return {"hf-segmentation": str(root / "seg"), "hf-depth": str(root / "depth"), "hf-feature": str(root / "vit"),
            "hf-detection": tiny_detector(root / "det"), "hf-caption": tiny_captioner(root / "cap")}


def tiny_detector(path) -> str:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], out_features=["stage4"])
    names = {0: "cube", 1: "sphere", 2: "person"}
    cfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=16,
                     encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=5, num_labels=3, id2label=names,
                     label2id={v: k for k, v in names.items()})
    DetrForObjectDetection(cfg).save_pretrained(path)
    DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 32}).save_pretrained(path)
    return str(path)


def tiny_captioner(path) -> str:
    """A ViT encoder + GPT-2 decoder with a 300-piece byte-level BPE learned here."""
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(["a red cube on the floor", "a blue sphere near a wall"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    end = "<|endoftext|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=end, eos_token=end, pad_token=end)
    enc = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    dec = GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
                     eos_token_id=0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = cfg.pad_token_id = cfg.eos_token_id = 0
    model = VisionEncoderDecoderModel(cfg)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = 0, 0, 0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def test_pipeline_labelers_on_tiny_random_models(tmp_path):
    models = tiny_hf_models(tmp_path / "models")
    photos = photo_folder(tmp_path / "photos", 3)
    info = label_images(photos, tmp_path / "ds", labelers=list(models), models=models, res=32)
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert report["labeler_failures"] == [] and info["count"] == 3
    by_name = {lab["name"]: lab for lab in info["labelers"]}
    assert "transformers" in by_name["hf-depth"]["version"]
    assert by_name["hf-segmentation"]["semseg_classes"] == ["none", "sky", "wall", "thing"]
    s = next(iter_shards(tmp_path / "ds"))
    assert s["depth"].shape == (32, 32) and s["semseg"].shape == (32, 32) and int(s["semseg"].max()) <= 3
    assert s["hf_feature"].shape == (16,) and s["hf_feature"].dtype == np.float16
    assert isinstance(s["caption"], str) and isinstance(s["det"], list)
    # the feature vectors go through an MLP tokenizer: the same ids for every crop
    import torch

    from polymodal.tokenizers.mlp import MLPTokenizer, MLPTokenizerConfig

    torch.manual_seed(0)
    MLPTokenizer(MLPTokenizerConfig(in_dim=16, name="tok_feat@lab", num_tokens=4, codebook_size=16, hidden=16,
                                    depth=1)).save_pretrained(tmp_path / "t_feat")
    tok = pretokenize(str(tmp_path / "ds"), {"hf_feature": str(tmp_path / "t_feat")}, tmp_path / "tok", crops=2)
    assert tok["modalities"]["tok_feat@lab"]["spec"]["pos"] == "learned"
    from polymodal.data.sources import read_token_shard

    ids = read_token_shard(tmp_path / "tok" / "tokens-000000.tar")[0]["tok_feat@lab"]
    assert ids.shape == (2, 4) and (ids[0] == ids[1]).all()
    # the detector's boxes become pixel boxes inside the image, with its class names
    from polymodal.data.labelers.hf import PipelineLabeler

    det = PipelineLabeler("hf-detection", models["hf-detection"], threshold=0.0)(s["rgb"])["det"]
    assert det and all(d["class"] in ("cube", "sphere", "person") for d in det)
    assert all(0 <= d["box"][0] < d["box"][2] <= 32 and 0 <= d["box"][1] < d["box"][3] <= 32 for d in det)
