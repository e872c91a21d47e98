"""Low-memory mode of a released model (`ReleaseTokenizers(low_memory=True)`, ``generate --low-memory``): the same
outputs as with every tokenizer held, one tokenizer folder held at a time, a misfit still refused before anything
runs. The fixture release: the tiny 4M-21-style model, two DiVAEs and one Memcodes MLP (test_official.py)."""

from __future__ import annotations

import json
import shutil
import weakref

import pytest
import torch
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.config import ModelConfig
from polymodal.hub import HubError
from polymodal.nn.loading import read_safetensors
from polymodal.pipeline import Pipeline, PipelineError
from polymodal.pipeline.official import ReleaseTokenizers
from polymodal.pipeline.official_values import decode_release
from polymodal.tokenizers.ml4m import divae
from polymodal.tokenizers.ml4m import folder as official_folder
from polymodal.tokenizers.ml4m.divae import DiVAE
from polymodal.tokenizers.ml4m.vqvae import OfficialVQVAE
from tests.conftest import single_thread

from ..conftest import fixtures_dir
from ..test_hub import TEXT_FILE, no_network  # noqa: F401
from .test_official import DOMAINS, FAST, local_args, photo, tokenizer_dir  # noqa: F401 - photo is a fixture

one_thread = pytest.fixture(autouse=True)(single_thread)
TEXT = fixtures_dir("ml4m-text-tokenizer", TEXT_FILE)
EVERY = ["tok_rgb@224", "tok_depth@224", "tok_dinov2_global", "caption", "det"]


@pytest.fixture(autouse=True)
def offline(no_network):  # noqa: F811 - nothing here may reach the network
    return no_network


def release(low_memory: bool, **overrides) -> Pipeline:
    folders = {d: tokenizer_dir(d) for d in DOMAINS} | overrides
    return Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), text_tokenizer=TEXT, tokenizers=folders,
                                    low_memory=low_memory)


def inputs(photo):  # noqa: F811
    """An RGB photo (the model's pixel input: no tokenizer) and a depth map (encoded by the depth DiVAE)."""
    depth = torch.rand(224, 224, generator=torch.Generator().manual_seed(1)) * 5 + 1
    return {"rgb": photo, "tok_depth@224": depth}


def test_the_same_outputs_with_one_tokenizer_at_a_time(photo):  # noqa: F811
    runs = {}
    for low in (False, True):
        pipe = release(low)
        runs[low] = [pipe.generate(inputs(photo), ["tok_rgb@224", "tok_dinov2_global", "caption"], seed=5,
                                   decode_steps=2, sampler="ddim", notify=lambda m: None),
                     pipe.generate({"rgb": photo}, plan="rgb_to_all", seed=2, decode_steps=2, sampler="ddim",
                                   notify=lambda m: None)]
        held = [n for n in pipe.tokenizers.loaded if n != "text"]
        assert held == ([] if low else ["tok_depth@224", "tok_rgb@224", "tok_dinov2_global"]), held
    for full, low in zip(runs[False], runs[True]):
        assert full.ids.keys() == low.ids.keys() and full.values.keys() == low.values.keys()
        for name in full.ids:
            assert torch.equal(full.ids[name], low.ids[name]), name
            a, b = full.values[name], low.values[name]
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, name
        assert full.kinds == low.kinds


def test_each_tokenizer_is_held_only_while_it_is_used(photo, monkeypatch):  # noqa: F811
    pipe = release(True)
    seen, refs = [], []

    def spy(cls, method):
        original = getattr(cls, method)

        def wrapped(tok, *args, **kwargs):
            seen.append((tok.cfg.name, method, tuple(n for n in pipe.tokenizers.loaded if n != "text")))
            refs.append(weakref.ref(tok))
            return original(tok, *args, **kwargs)
        monkeypatch.setattr(cls, method, wrapped)

    for cls in (DiVAE, OfficialVQVAE):
        spy(cls, "encode")
        spy(cls, "decode")
    pipe.generate(inputs(photo), ["tok_rgb@224", "tok_dinov2_global", "caption"], decode_steps=2, sampler="ddim",
                  notify=lambda m: None)
    assert seen == [("tok_depth@224", "encode", ("tok_depth@224",)), ("tok_rgb@224", "decode", ("tok_rgb@224",)),
                    ("tok_dinov2_global", "decode", ("tok_dinov2_global",))]
    assert pipe.tokenizers.loaded == ("text",) and not pipe.tokenizers._folders
    assert refs and all(r() is None for r in refs)  # nothing else keeps the weights alive (the outputs, a cache)


def test_a_tokenizer_looked_up_before_a_run_is_released_by_it(photo):  # noqa: F811
    pipe = release(True)
    pipe.tokenizers["tok_depth@224"]  # e.g. generate --index reads a vector width before the run
    assert pipe.tokenizers.loaded == ("text", "tok_depth@224")
    pipe.generate({"rgb": photo}, ["caption"], notify=lambda m: None)
    assert pipe.tokenizers.loaded == ("text",)


def test_require_checks_every_folder_without_reading_its_weights(monkeypatch):
    reads = []
    original = official_folder.read_safetensors

    def counting(path, *args, device="cpu", **kwargs):
        reads.append(device)
        return original(path, *args, device=device, **kwargs)
    monkeypatch.setattr(official_folder, "read_safetensors", counting)
    pipe = release(True)
    pipe.tokenizers.require([*DOMAINS, "caption"])
    assert reads == ["meta"] * len(DOMAINS) and pipe.tokenizers.loaded == ("text",)
    pipe.tokenizers.require(DOMAINS)  # checked once (a server asks again per request)
    assert len(reads) == len(DOMAINS)


def test_a_header_read_onto_meta_has_the_files_shapes_and_dtypes():
    file = tokenizer_dir("tok_depth@224") / "model.safetensors"
    real = read_safetensors(file, dtype=torch.bfloat16)
    meta = read_safetensors(file, dtype=torch.bfloat16, device="meta")
    assert meta.keys() == real.keys()
    assert all(m.is_meta and m.shape == real[k].shape and m.dtype == real[k].dtype for k, m in meta.items())


# ------------------------------------------------------------------------------------------- refused early


@pytest.mark.parametrize(("domain", "folder", "message"), [
    ("tok_rgb@224", "depth", "tok_rgb@224: tokenizer {folder} reads 1-channel images, tok_rgb@224 takes an rgb "
                             "DiVAE of 3 channels"),
    ("tok_depth@224", "other", "tok_depth@224: tokenizer {folder} has a codebook of 64 codes, this model's "
                               "tok_depth@224 has 96"),
    ("tok_dinov2_global", "depth", "tok_dinov2_global: tokenizer {folder} is a DiVAE (a diffusion decoder of "
                                   "images), tok_dinov2_global takes a vector VQ-VAE"),
    ("tok_depth@224", "missing", "'{folder}': no such tokenizer folder, and not a Hub repo id (owner/name or "
                                 "owner/name@revision)"),
])
def test_a_misfit_is_refused_before_generation(domain, folder, message, photo, monkeypatch, tmp_path):  # noqa: F811
    folder = {"depth": tokenizer_dir("tok_depth@224"), "other": fixtures_dir("ml4m-tokenizers", "depth"),
              "missing": str(tmp_path / "nowhere")}[folder]
    monkeypatch.setattr("polymodal.pipeline.bundle.generate", lambda *a, **k: pytest.fail("generation ran"))
    pipe = release(True, **{domain: folder})
    with pytest.raises((PipelineError, HubError)) as e:
        pipe.generate({"rgb": photo}, [domain, "caption"], notify=lambda m: None)
    assert str(e.value) == message.format(folder=folder)
    assert pipe.tokenizers.loaded == ("text",)


@pytest.mark.parametrize("damage", ["codebook_size", "truncated"])
def test_a_damaged_folder_is_the_same_line_as_a_full_load(damage, photo, tmp_path):  # noqa: F811
    """The check on the meta device and a load of the weights refuse a config that its tensors contradict, and a
    cut-off weights file, in the same words (the header is all either needs to see it)."""
    folder = tmp_path / "depth"
    shutil.copytree(tokenizer_dir("tok_depth@224"), folder)
    if damage == "codebook_size":
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "codebook_size": 64}))
    else:
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[:-1000])
    errors = []
    for low in (False, True):
        with pytest.raises(ValueError) as e:
            release(low, **{"tok_depth@224": folder}).generate({"rgb": photo}, ["tok_depth@224"],
                                                               notify=lambda m: None)
        errors.append(str(e.value))
    file = "config.json: codebook_size is 64" if damage == "codebook_size" else "model.safetensors: truncated"
    assert errors[0] == errors[1] and errors[0].startswith(str(folder / file)), errors


# ------------------------------------------------------------------------------------------ one folder, two


def test_a_folder_serving_two_domains_is_read_once_and_released_after_both(monkeypatch):
    """4M-21's one edge DiVAE serves canny and SAM edges: decoding both reads it once and frees it after the
    second (the fixture's depth DiVAE stands in: a 1-channel DiVAE)."""
    edges = ("tok_canny_edge@224", "tok_sam_edge@224")
    cfg = ModelConfig.preset("test", domains_in=("rgb@224", *edges), domains_out=edges,
                             vocab_sizes=dict.fromkeys(edges, 96))
    toks = ReleaseTokenizers(cfg, overrides=dict.fromkeys(edges, tokenizer_dir("tok_depth@224")), low_memory=True)
    reads = []
    original = divae.read_official_folder
    monkeypatch.setattr(divae, "read_official_folder", lambda *a, **k: reads.append(1) or original(*a, **k))

    ids = {e: torch.randint(0, 96, (1, 196), generator=torch.Generator().manual_seed(i)) for i, e in enumerate(edges)}
    values, kinds = decode_release(cfg, ids, toks, steps=1, sampler="ddim")
    assert len(reads) == 1 and toks.loaded == () and not toks._folders
    assert kinds == dict.fromkeys(edges, "edge") and all(v.shape == (1, 224, 224) for v in values.values())


# ------------------------------------------------------------------------------------------- command line


def test_the_flag_writes_the_same_files(photo, tmp_path, capsys):  # noqa: F811
    outs = {}
    for flag in ("--low-memory", "--no-low-memory"):
        out = outs[flag] = tmp_path / flag
        rc = main(["generate", *local_args(), "--from", f"rgb={photo}", "--to", ",".join(EVERY), "--out", str(out),
                   *FAST, flag])
        assert rc == 0, capsys.readouterr().err
    for file in ("tokens.safetensors", "values.safetensors"):
        a, b = load_file(str(outs["--low-memory"] / file)), load_file(str(outs["--no-low-memory"] / file))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    for file in ("caption.txt", "det.json", "tok_dinov2_global.json"):
        assert (outs["--low-memory"] / file).read_text() == (outs["--no-low-memory"] / file).read_text(), file


def test_the_flag_refuses_a_misfit_before_generation(photo, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setattr("polymodal.pipeline.bundle.generate", lambda *a, **k: pytest.fail("generation ran"))
    other = fixtures_dir("ml4m-tokenizers", "depth")
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--tokenizer", f"tok_depth@224={other}",
               "--from", f"rgb={photo}", "--to", "depth", "--out", str(out), "--low-memory"])
    assert rc == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"polymodal generate: tok_depth@224: tokenizer {other} has a codebook of 64 codes, this model's "
        "tok_depth@224 has 96")
