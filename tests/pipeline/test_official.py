"""A released 4M-21 model as a pipeline, made of the fixture weights: the tiny 4M-21-style checkpoint, its three
tokenizers (two DiVAEs, one Memcodes MLP) and 4M's text tokenizer, reached through an offline Hub cache laid out as
huggingface_hub lays it out, and through local folders. Decodes use 2 DDIM steps to stay fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from polymodal import hub
from polymodal.cli import main
from polymodal.data.world import render_sample
from polymodal.pipeline import Pipeline
from polymodal.pipeline.inputs import IMAGENET_MEAN, IMAGENET_STD
from polymodal.pipeline.official import ReleaseTokenizers
from polymodal.tokenizers.ml4m.divae import DiVAE
from tests.conftest import single_thread

from ..conftest import fixtures_dir
from ..test_hub import COMMIT_A, TEXT_FILE, cache, cache_repo, folder_files, no_network  # noqa: F401

one_thread = pytest.fixture(autouse=True)(single_thread)


@pytest.fixture(autouse=True)
def offline(no_network):  # noqa: F811 - every test here runs with the network cut (test_hub's fixture)
    return no_network

MODEL = "EPFL-VILAB/4M-21_B"
DOMAINS = ("tok_rgb@224", "tok_depth@224", "tok_dinov2_global")
EVERY_OUTPUT = "tok_rgb@224,tok_depth@224,tok_dinov2_global,caption,det,metadata"
FAST = ["--decode-steps", "2", "--sampler", "ddim"]


def tokenizer_dir(domain: str):
    return fixtures_dir("ml4m-4m21-tiny-tokenizers", domain)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A world scene at 256 px: resized to the model's 224 with a notice."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(render_sample(1, 3, 256)["rgb"]).save(path)
    return path


@pytest.fixture
def release(cache):  # noqa: F811 - test_hub's offline cache fixture
    """The tiny model and its tokenizers as the release's repos in an offline Hub cache (snapshots named by
    commit, so a tokenizer's folder name says nothing of its domain)."""
    cache_repo(cache, MODEL, folder_files(fixtures_dir("ml4m-4m21-tiny")), commit=COMMIT_A)
    for domain in DOMAINS:
        cache_repo(cache, hub.RELEASED_TOKENIZERS[domain], folder_files(tokenizer_dir(domain)), commit=COMMIT_A)
    text_repo = "someone/4M-text-tokenizer"
    cache_repo(cache, text_repo, {TEXT_FILE: fixtures_dir("ml4m-text-tokenizer", TEXT_FILE)}, commit=COMMIT_A)
    return text_repo


def local_args() -> list[str]:
    return ["--model", str(fixtures_dir("ml4m-4m21-tiny")), "--text-tokenizer",
            str(fixtures_dir("ml4m-text-tokenizer", TEXT_FILE)), "--tokenizer",
            *[f"{d}={tokenizer_dir(d)}" for d in DOMAINS]]


def check_files(out, targets, side=224):
    """Every target has its data file and its picture; pictures decode; JSON parses; tensors hold every target."""
    names = {p.name for p in out.iterdir()}
    for t in targets:
        stem = t.replace("@", "_")
        assert f"{stem}.png" in names, (t, sorted(names))
        img = Image.open(out / f"{stem}.png")
        img.load()
        assert img.width >= side and img.height >= side, (t, img.size)
        if t in ("caption",):
            assert (out / f"{stem}.txt").read_text().strip() is not None
        elif t in ("det", "metadata", "tok_dinov2_global"):
            json.loads((out / f"{stem}.json").read_text())
    assert set(load_file(str(out / "tokens.safetensors"))) == set(targets)
    Image.open(out / "grid.png").load()


def test_rgb_to_all_through_the_hub_cache(release, photo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", "--model", MODEL, "--text-tokenizer", release, "--from", f"rgb={photo}",
               "--plan", "rgb_to_all", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "notice: rgb@224: 256x256 image resized to 224x224" in err
    check_files(out, ["tok_depth@224", "caption", "det", "metadata", "tok_dinov2_global"])
    assert Image.open(out / "tok_depth_224.png").size == (224, 224)
    assert len(json.loads((out / "tok_dinov2_global.json").read_text())) == 768
    values = load_file(str(out / "values.safetensors"))
    assert values["tok_depth@224"].shape == (224, 224)  # standardized depth, not ids


def test_every_output_through_local_folders(photo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", *local_args(), "--from", f"rgb={photo}", "--to", EVERY_OUTPUT, "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    check_files(out, EVERY_OUTPUT.split(","))
    values = load_file(str(out / "values.safetensors"))
    rgb = values["tok_rgb@224"]
    assert rgb.shape == (3, 224, 224) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    assert np.asarray(Image.open(out / "tok_rgb_224.png")).shape == (224, 224, 3)


def test_caption_to_all_writes_the_rgb_chain(tmp_path, capsys):
    out = tmp_path / "out"
    # Words of the tiny model's 4400-id vocabulary: 4M's COCO class tokens.
    rc = main(["generate", *local_args(), "--from", "caption=person dog", "--plan", "caption_to_all",
               "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    check_files(out, ["tok_dinov2_global", "tok_depth@224", "tok_rgb@224", "det", "metadata"])


def test_tokenizers_load_when_needed_and_decode_repeatably(release, photo):
    pipe = Pipeline.from_pretrained(MODEL, text_tokenizer=release)
    assert isinstance(pipe.tokenizers, ReleaseTokenizers) and pipe.tokenizers.loaded == ("text",)
    assert set(DOMAINS) <= set(pipe.tokenizers)  # known, not loaded
    a = pipe.generate({"rgb": photo}, ["tok_depth@224"], decode_steps=2, sampler="ddim", seed=3, notify=print)
    assert pipe.tokenizers.loaded == ("text", "tok_depth@224")  # RGB -> depth read one tokenizer
    assert isinstance(pipe.tokenizers["tok_depth@224"], DiVAE) and a.kinds["tok_depth@224"] == "relative_depth"
    b = pipe.generate({"rgb": photo}, ["tok_depth@224"], decode_steps=2, sampler="ddim", seed=3, notify=print)
    c = pipe.generate({"rgb": photo}, ["tok_depth@224"], decode_steps=3, sampler="ddim", seed=3, notify=print)
    assert torch.equal(a.values["tok_depth@224"], b.values["tok_depth@224"])
    assert torch.equal(a.ids["tok_depth@224"], c.ids["tok_depth@224"])
    assert not torch.equal(a.values["tok_depth@224"], c.values["tok_depth@224"])  # the step count is used


def test_each_tokenizer_owns_its_normalization(photo):
    folders = {d: tokenizer_dir(d) for d in DOMAINS}
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), tokenizers=folders)
    img = np.array(Image.open(photo).resize((224, 224)))
    x = torch.as_tensor(img).permute(2, 0, 1).float()[None] / 255
    tok = pipe.tokenizers["tok_rgb@224"]
    ids = pipe.conditions({"tok_rgb@224": img})["tok_rgb@224"]
    assert torch.equal(ids, tok.encode(x))  # 0..1 in: the DiVAE maps to [-1, 1] itself
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert not torch.equal(ids, tok.encode((x - mean) / std))  # a second normalization would change the tokens
    pixels = pipe.conditions({"rgb@224": img})["rgb@224"]
    assert torch.allclose(pixels, (x - mean) / std, atol=1e-6)  # the model's own pixel input: ImageNet's
    depth = torch.rand(224, 224, generator=torch.Generator().manual_seed(0)) * 9 + 1
    depth_ids = pipe.conditions({"depth": depth})["tok_depth@224"]
    assert torch.equal(depth_ids, pipe.tokenizers["tok_depth@224"].encode(depth[None]))


def test_the_demo_chain_settings(photo):
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"))
    plan = pipe.plan(plan="rgb_to_all")
    assert plan.targets == ("tok_depth@224", "caption", "det", "metadata", "tok_dinov2_global")
    assert all(s.top_p == 0.8 for s in plan.steps)  # Demo4MSampler's nucleus
    assert [s.num_steps for s in plan.steps if s.scheme == "roar"] == [1, 1]
    assert pipe.tokenizers.loaded == ()  # planning loads nothing


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("override", "message"), [
    ("tok_rgb@224={depth}", "tok_rgb@224: tokenizer {depth} reads 1-channel images, tok_rgb@224 takes an rgb DiVAE "
                            "of 3 channels"),
    ("tok_depth@224={other}", "tok_depth@224: tokenizer {other} has a codebook of 64 codes, this model's "
                              "tok_depth@224 has 96"),
    ("tok_depth@224={semseg}", "tok_depth@224: tokenizer {semseg} is a semseg VQ-VAE, tok_depth@224 takes a depth "
                               "DiVAE"),
    ("tok_dinov2_global={depth}", "tok_dinov2_global: tokenizer {depth} is a DiVAE (a diffusion decoder of images), "
                                  "tok_dinov2_global takes a vector VQ-VAE"),
    ("tok_semseg@224={depth}", "--tokenizer tok_semseg@224={depth}: tok_semseg@224 is not a tokenized domain of this "
                               "model (its tokenized domains: tok_rgb@224, tok_depth@224, tok_dinov2_global)"),
    ("{depth}", "--tokenizer {depth}: for a released 4M model give DOMAIN=FOLDER (e.g. tok_depth@224=path/to/"
                "folder), which domain a folder serves is not guessed"),
])
def test_a_tokenizer_that_does_not_fit_its_domain(override, message, photo, tmp_path, capsys):
    folders = {"depth": tokenizer_dir("tok_depth@224"), "other": fixtures_dir("ml4m-tokenizers", "depth"),
               "semseg": fixtures_dir("ml4m-tokenizers", "semseg")}
    override, message = override.format(**folders), message.format(**folders)
    domain = override.partition("=")[0]
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--tokenizer", override,
               "--from", f"rgb={photo}", "--to", domain if domain in DOMAINS else "tok_depth@224", "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"polymodal generate: {message}"
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "caption"], "caption: 4M's text tokenizer is needed (text_tokenizer_4m_wordpiece_30k.json, in "
                          "apple/ml-4m under fourm/utils/tokenizer/trained/); pass it with --text-tokenizer PATH "
                          "(text_tokenizer= in Python)"),
    (["--to", "depth", "--decode-steps", "0"], "--decode-steps: must be a whole number from 1 to 1000, got 0"),
    (["--to", "depth", "--sampler", "euler"], "--sampler: must be one of ddpm, ddim, got 'euler'"),
    (["--to", "depth", "--no-resize"], "rgb@224: the image is 256x256 pixels, the model takes 224x224; pass it at "
                                       "that size or allow resizing (without --no-resize)"),
])
def test_bad_runs_are_one_line(args, message, photo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--tokenizer",
               f"tok_depth@224={tokenizer_dir('tok_depth@224')}", "--from", f"rgb={photo}", *args, "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"polymodal generate: {message}"
    assert not out.exists()


def test_a_released_tokenizer_missing_offline_says_how_to_get_it(cache, photo, tmp_path, capsys):  # noqa: F811
    cache_repo(cache, MODEL, folder_files(fixtures_dir("ml4m-4m21-tiny")), commit=COMMIT_A)
    rc = main(["generate", "--model", MODEL, "--from", f"rgb={photo}", "--to", "depth", "--out", str(tmp_path / "o")])
    repo = hub.RELEASED_TOKENIZERS["tok_depth@224"]
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"polymodal generate: {repo}: no such local tokenizer folder, and not in the Hub cache")
    assert f"hf download {repo}" in err and not (tmp_path / "o").exists()


def test_info_names_the_release_tokenizers_without_loading_them():
    from polymodal.pipeline.describe import domain_rows

    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"))
    rows = {r.name: r.tokenizer for r in domain_rows(pipe)}
    assert rows["tok_depth@224"] == f"{hub.RELEASED_TOKENIZERS['tok_depth@224']} (loaded when used)"
    assert rows["caption"] == "none given: --text-tokenizer text_tokenizer_4m_wordpiece_30k.json"
    assert pipe.tokenizers.loaded == ()


def test_sam_instances_and_poses_decode_through_their_tokenizers(tmp_path):
    """sam_instance and human_poses are text holding codes of a VQ-VAE: decoded, the codes go through it (a mask
    tokenizer written in the released layout with image_size 224, as the 224-448 configs say; poses in memory)."""
    from polymodal.config import ModelConfig
    from polymodal.pipeline.official_values import decode_release
    from polymodal.tokenizers.ml4m.folder import save_official
    from polymodal.tokenizers.ml4m.vqvae import OfficialVQVAE, OfficialVQVAEConfig
    from polymodal.tokenizers.serializers import SERIALIZERS, Instance, PersonPose, QueryPoint
    from polymodal.tokenizers.text import TextTokenizer
    from polymodal.viz.official import SamInstances, SMPLPerson

    from ..viz.test_official_pictures import pose_tokenizer

    torch.manual_seed(0)
    mask = OfficialVQVAE(OfficialVQVAEConfig(values="mask", in_channels=1, out_channels=1, image_size=224,
                                             patch_size=16, enc_dim=64, enc_depth=1, dec_dim=64, dec_depth=1,
                                             latent_dim=8, codebook_size=1024)).eval()
    save_official(mask, tmp_path / "sam")
    cfg = ModelConfig.preset("test", domains_in=("rgb@224", "sam_instance", "human_poses"),
                             domains_out=("sam_instance", "human_poses"))
    text = TextTokenizer.from_pretrained(fixtures_dir("ml4m-text-tokenizer", TEXT_FILE))
    toks = ReleaseTokenizers(cfg, text=text, overrides={"sam_instance": tmp_path / "sam"},
                             given={"human_poses": pose_tokenizer()})
    points = [QueryPoint(x=30, y=40, instances=(Instance((10, 20, 90, 120), tuple(range(100, 116))),))]
    people = [PersonPose((0.1, 0.2, 0.5, 0.9), (3, 700, 0, 1, 2, 1023, 5, 6), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                         (0.9, 0.1, -0.2), (0.0,) * 10)]
    ids = {"sam_instance": torch.tensor([SERIALIZERS["sam_instance"].encode(points, text)]),
           "human_poses": torch.tensor([SERIALIZERS["human_poses"].encode(people, text)])}
    values, kinds = decode_release(cfg, ids, toks)
    assert kinds == {"sam_instance": "sam_masks", "human_poses": "smpl_poses"}
    sam = values["sam_instance"][0]
    assert isinstance(sam, SamInstances) and sam.points == points and sam.ids.shape == (224, 224)
    assert toks["sam_instance"].num_tokens == 16  # 4 x 4 tokens of a 64 px mask, whatever the config's size
    person = values["human_poses"][0][0]
    assert isinstance(person, SMPLPerson) and person.pose_codes == [3, 700, 0, 1, 2, 1023, 5, 6]
    assert torch.allclose(torch.tensor(person.body_pose),
                          toks["human_poses"].decode(torch.tensor([list(people[0].pose)])).reshape(23, 3, 3))


def test_a_mistyped_channel_count_is_the_loaders_line(photo, tmp_path, capsys):
    """The pipeline's own channel check read n_channels with int() first: "invalid literal for int() with base 10:
    'three'" instead of the tokenizer loader's line naming config.json and the field."""
    import shutil

    folder = tmp_path / "tok_rgb@224"
    shutil.copytree(tokenizer_dir("tok_rgb@224"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "n_channels": "three"}))
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--tokenizer", f"tok_rgb@224={folder}",
               "--from", f"rgb={photo}", "--to", "tok_rgb@224", "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"polymodal generate: {folder / 'config.json'}: n_channels='three' is not an integer")
    assert not out.exists()
