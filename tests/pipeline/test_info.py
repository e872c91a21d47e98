"""`polymodal info`: the registry, and the inputs and outputs of the default model (or ``--model``) by the names
`generate` takes; the example it prints runs."""

from __future__ import annotations

import json
import shlex

import pytest
from PIL import Image

from polymodal.cli import main
from polymodal.data.world import render_sample
from polymodal.pipeline import demo

from ..shipped import shipped_registry

shipped = pytest.fixture(shipped_registry)


def _rows(out: str) -> dict[str, list[str]]:
    """Lines of the model table by their first word (the domain name)."""
    table = out.split("generate --from/--to take the name or the short name\n", 1)[1].split("\n\n")[0]
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


def test_info_lists_the_default_models_inputs_and_outputs_and_its_example_runs(shipped, tmp_path, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "registered modalities" in out and "model presets" in out  # the registry is still there
    assert f"model {shipped} (the default of generate" in out
    config = json.loads((shipped / "model" / "config.json").read_text())
    rows = _rows(out)
    # Every domain of the model's own config.json, marked input and output as it says.
    assert set(rows) == set(config["domains_in"]) | set(config["domains_out"])
    for name, cols in rows.items():
        assert cols[2:4] == ["yes" if name in config["domains_in"] else "-",
                             "yes" if name in config["domains_out"] else "-"], cols
    assert rows["tok_depth@64"][1] == "depth" and rows["tok_minilm_global"][1] == "minilm_global"
    assert " ".join(rows["tok_depth@64"][4:]) == "ViTVQVAE: depth images, 64 px -> 8x8 tokens, 512 codes"
    assert " ".join(rows["tok_minilm_global"][4:]) == "MLPTokenizer: vectors of 384 -> 16 tokens, 256 codes"
    assert rows["caption"][4] == "TextTokenizer:"
    # The @64 domains the bundle registers are listed in the registry table too.
    assert any(line.startswith("tok_rgb@64 ") and "image_tokens" in line for line in out.splitlines())

    example = out.rstrip().splitlines()[-1]
    assert example == "e.g. polymodal generate --from rgb=FILE --to depth,caption --out out/"
    img = tmp_path / "scene.png"
    Image.fromarray(render_sample(1, 0, 64)["rgb"]).save(img)
    args = shlex.split(example.removeprefix("e.g. polymodal "))
    args = [a.replace("FILE", str(img)).replace("out/", str(tmp_path / "out")) for a in args]
    assert main(args) == 0, capsys.readouterr().err
    assert {"tok_depth_64.png", "caption.txt"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_info_of_a_given_bundle_names_roles_and_short_names(bundle, capsys):
    assert main(["info", "--model", str(bundle)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert f"model {bundle}: " in out and "the default of" not in out
    # rgb@pt is pixels, an input only; "rgb" is the pixels in --from and the RGB tokens in --to.
    assert rows["rgb@pt"][:4] == ["rgb@pt", "rgb", "yes", "-"] and "pixels" in rows["rgb@pt"]
    assert rows["tok_rgb@pt"][1:4] == ["rgb", "(--to", "only)"]
    assert rows["tok_semseg@pt"][1] == "semseg" and "32 codes" in " ".join(rows["tok_semseg@pt"])
    assert out.rstrip().endswith(f"e.g. polymodal generate --model {bundle} --from rgb=FILE --to depth,caption "
                                 "--out out/")


def test_info_with_a_broken_model_is_one_line_and_without_the_default_still_lists_the_registry(
        bundle, tmp_path, monkeypatch, capsys):
    assert main(["info", "--model", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal info: ") and err.count("\n") == 1 and "nothing" in err
    monkeypatch.setattr(demo, "DEFAULT_MODEL", tmp_path / "weights" / "default")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "registered modalities" in out and "default model: none (the default model is missing" in out
