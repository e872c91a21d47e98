"""`polymodal generate|demo|bundle|embed` as a new user runs them: an --out that is the wrong kind of path, a bundle
written over its own source, --scenes 0, a device that is not there, a vector from a file, a caption cut short.
Each refusal is one line and exit code 2, before any work and with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from polymodal.cli import main
from tests.shipped import shipped_registry


@pytest.fixture()
def shipped():
    yield from shipped_registry()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_generate_out_an_existing_file_is_refused_before_generating(bundle, image, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    rc, err = _run(capsys, "generate", "--model", str(bundle), "--from", f"rgb={image}", "--to", "depth",
                   "--out", str(out))
    assert rc == 2 and err == f"polymodal generate: --out {out} is a file, not a folder\n"
    assert out.read_text() == "mine"


def test_demo_out_an_existing_file_is_refused(bundle, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    rc, err = _run(capsys, "demo", "--model", str(bundle), "--out", str(out))
    assert rc == 2 and err == f"polymodal demo: --out {out} is a file, not a folder\n"


@pytest.mark.parametrize("scenes", ["0", "-1"])
def test_demo_needs_a_scene(bundle, tmp_path, capsys, scenes):
    rc, err = _run(capsys, "demo", "--model", str(bundle), "--scenes", scenes, "--out", str(tmp_path / "d"))
    assert rc == 2 and err == f"polymodal demo: --scenes: must be a whole number of at least 1, got {scenes}\n"
    assert not (tmp_path / "d").exists()


def test_embed_out_a_folder_is_refused_before_embedding(bundle, image, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(image, images / "a.png")
    out = tmp_path / "features"
    out.mkdir()
    rc, err = _run(capsys, "embed", "--model", str(bundle), "--images", str(images), "--out", str(out), "--quiet")
    assert rc == 2 and err == f"polymodal embed: --out {out} is a folder, not a .safetensors file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features", "images"]  # no features.tmp left


def test_bundle_over_its_own_model_is_refused(bundle, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    rc, err = _run(capsys, "bundle", "--model", str(copy), "--out", str(copy), "--half")
    assert rc == 2 and err == (f"polymodal bundle: --out {copy} holds --model {copy}; write the bundle to another "
                               "folder\n")
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_embed_unknown_device_is_one_line(bundle, image, tmp_path, capsys):
    rc, err = _run(capsys, "embed", "--model", str(bundle), "--images", str(image.parent), "--out",
                   str(tmp_path / "f.safetensors"), "--device", "nonsense")
    assert rc == 2 and err == ("polymodal embed: device 'nonsense' is not a torch device (cpu, cuda, cuda:1, mps, "
                               "...)\n")


def test_generate_reads_a_vector_from_the_json_it_writes(shipped, image, tmp_path, capsys):
    rc, err = _run(capsys, "generate", "--from", f"rgb={image}", "--to", "minilm_global", "--out",
                   str(tmp_path / "a"))
    assert rc == 0, err
    vec = tmp_path / "a" / "tok_minilm_global.json"
    assert len(json.loads(vec.read_text())) == 384
    rc, err = _run(capsys, "generate", "--from", f"minilm_global={vec}", "--to", "caption", "--out",
                   str(tmp_path / "b"))
    assert rc == 0, err
    assert (tmp_path / "b" / "caption.txt").read_text().strip()


def test_generate_long_caption_is_one_notice(shipped, tmp_path, capsys):
    rc, err = _run(capsys, "generate", "--from", "caption=" + "a red cube " * 200, "--to", "metadata", "--out",
                   str(tmp_path / "o"))
    assert rc == 0, err
    assert err == ("notice: caption: text is 601 tokens with [EOS], over the maximum of 256: cut by 345 tokens "
                   "(the cut sequence has no [EOS], as in 4M)\n")


def test_embed_quiet_names_a_skipped_image_once(bundle, image, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(image, images / "a.png")
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc = main(["embed", "--model", str(bundle), "--images", str(images), "--out", str(tmp_path / "f.safetensors"),
               "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # --quiet: the summary's list only; the progress bar's "skipped:" line came out too
    assert (captured.out + captured.err).count("b.png") == 1


@pytest.mark.parametrize("command, out", [("generate", "taken/sub"), ("embed", "taken/f.safetensors"),
                                          ("demo", "taken/sub"), ("bundle", "taken/sub")])
def test_out_below_a_file_is_refused_before_any_work(bundle, image, tmp_path, capsys, command, out):
    (tmp_path / "taken").write_text("mine")
    out = str(tmp_path / out)
    args = {"generate": ["--from", f"rgb={image}", "--to", "depth"], "embed": ["--images", str(image.parent)],
            "demo": [], "bundle": []}[command]
    rc, err = _run(capsys, command, "--model", str(bundle), *args, "--out", out)
    assert rc == 2 and err == f"polymodal {command}: --out {out}: {tmp_path / 'taken'} is a file, not a folder\n"


def test_generate_into_a_used_folder_names_the_files_it_left(bundle, image, tmp_path, capsys):
    # a second run into the same --out left the first run's det.json beside the new outputs without a word
    out = tmp_path / "o"
    base = ["generate", "--model", str(bundle), "--from", f"rgb={image}", "--out", str(out)]
    assert _run(capsys, *base, "--to", "det,tok_depth@pt")[0] == 0
    rc, err = _run(capsys, *base, "--to", "tok_depth@pt")
    assert rc == 0
    assert err == (f"notice: {out} also holds files this run did not write (an earlier run's?): det.json\n")
    rc, err = _run(capsys, *base, "--to", "tok_depth@pt")
    assert rc == 0 and err == f"notice: {out} also holds files this run did not write (an earlier run's?): det.json\n"
