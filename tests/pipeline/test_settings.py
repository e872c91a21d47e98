"""One rule for generation settings (pipeline.settings) on the command line, the server and the library; step
counts from 1 to a target's tokens; an input given twice (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from polymodal.cli import main
from polymodal.data.world import render_sample
from polymodal.generation import generate_iter
from polymodal.pipeline import PipelineError
from polymodal.pipeline.settings import SettingError, check, check_settings

BAD = [  # (setting, value as typed, the words after "must be")
    ("temperature", "nan", "a number from 0 to 5"),
    ("temperature", "inf", "a number from 0 to 5"),
    ("temperature", "5.5", "a number from 0 to 5"),
    ("guidance", "nan", "a number from 0 to 10"),
    ("guidance", "-5", "a number from 0 to 10"),
    ("steps", "0", "a whole number of at least 1"),
    ("seed", "-1", "a whole number from 0 to 2147483647"),
]


@pytest.mark.parametrize("key, value, allowed", BAD)
def test_command_line_server_and_library_refuse_alike(pipe, tmp_path, capsys, key, value, allowed):
    # the command line: one line, exit 2, before the model is even looked for
    rc = main(["generate", "--model", str(tmp_path / "absent"), "--from", "caption=a cube", "--to", "depth",
               "--out", str(tmp_path / "o"), f"--{key}", value])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"polymodal generate: --{key}: must be {allowed}, got ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    # the library (what the server's jobs and `polymodal.retrieval.query` call)
    with pytest.raises(SettingError, match=f"^{key}: must be {allowed}, got "):
        pipe.generate({"caption": "a cube"}, ["depth"], **{key: float(value)})
    # the server's request parser, with the JSON value as a number and as text
    requests = pytest.importorskip("polymodal.serve.requests")
    for sent in (float(value), value):
        with pytest.raises(requests.RequestError, match=f"^{key}: must be {allowed}, got ") as e:
            requests.settings({key: sent})
        assert e.value.status == 400


def test_the_rule_takes_numbers_as_json_and_forms_send_them():
    assert check_settings(steps="3", temperature=0, guidance="2.5", seed=7.0) == {
        "steps": 3, "temperature": 0.0, "guidance": 2.5, "seed": 7}
    assert check("k", np.int64(20)) == 20
    for key, value in [("steps", 2.5), ("steps", True), ("k", 21), ("k", [3]), ("seed", "x"), ("steps", "1e400")]:
        with pytest.raises(SettingError, match=f"^{key}: must be "):
            check(key, value)
    requests = pytest.importorskip("polymodal.serve.requests")
    assert requests.settings({"steps": "", "temperature": None}) == requests.Settings()  # the page's "auto"
    assert requests.top_k({"k": "7"}) == 7


def test_guidance_zero_is_kept(pipe):
    """0 is the unconditional prediction; it used to become 1 (``guidance or 1.0``)."""
    assert [s.guidance_scale for s in pipe.plan(["depth", "caption"], guidance=0.0).steps] == [0.0, 0.0]
    assert [s.guidance_scale for s in pipe.plan(["depth"]).steps] == [1.0]


def test_every_step_count_up_to_the_tokens_runs_a_token_a_step_at_least(pipe):
    """tok_depth@pt has 16 tokens: 8 and 14 steps were refused, 9-13 and 16 ran steps that committed nothing."""
    conds = pipe.conditions({"caption": "a red cube"})
    for steps in range(1, 17):
        plan = pipe.plan(["depth"], steps=steps)
        left = [int(r.state["tok_depth@pt"].is_target.sum()) for r in generate_iter(pipe.model, conds, plan, seed=0)]
        committed = -np.diff([16, *left])
        assert len(committed) == steps and committed.min() >= 1 and left[-1] == 0, (steps, committed)
    with pytest.raises(SettingError, match=r"^tok_depth@pt: 17 steps for its 16 tokens is too many \(steps: must be "
                                           r"a whole number from 1 to 16\)$"):
        pipe.plan(["depth"], steps=17)


def test_a_preset_refuses_too_many_steps_as_a_list_of_targets_does(pipe):
    """--plan rgb_to_all --steps 100 used to be cut to each target's token count quietly, where --to refused it."""
    with pytest.raises(SettingError, match=r"^tok_depth@pt: 17 steps for its 16 tokens is too many"):
        pipe.plan(plan="rgb_to_all", steps=17)
    steps = {s.target: s.num_steps for s in pipe.plan(plan="rgb_to_all", steps=4).steps if s.scheme != "autoregressive"}
    assert steps and set(steps.values()) == {4}


@pytest.mark.parametrize("steps", ["8", "16"])
def test_generate_runs_the_step_counts_that_failed(bundle, tmp_path, capsys, steps):
    rc = main(["generate", "--model", str(bundle), "--from", "caption=a red cube", "--to", "depth", "--steps", steps,
               "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(render_sample(1, 5, 64)["rgb"]).save(path)
    return path


def test_an_input_given_twice_is_refused_naming_both(pipe, bundle, scene, tmp_path, capsys):
    img = Image.open(scene)
    with pytest.raises(PipelineError, match=r"^input rgb@pt is given as 'rgb' and as 'rgb@pt'; give each input once$"):
        pipe.generate({"rgb": img, "rgb@pt": img}, ["depth"])
    with pytest.raises(PipelineError, match="input tok_depth@pt is given as 'tok_depth@pt' and as 'depth'"):
        pipe.conditions({"tok_depth@pt": np.zeros((64, 64), np.float32), "depth": np.ones((64, 64), np.float32)})
    for given, message in [
        (["rgb=IMG", "rgb@pt=IMG"], "input rgb@pt is given as 'rgb' and as 'rgb@pt'; give each input once"),
        (["caption=a", "caption=b"], "--from caption is given twice (caption='a' and caption='b'); give each input "
                                     "once"),
    ]:
        args = [a for g in given for a in ("--from", g.replace("IMG", str(scene)))]
        rc = main(["generate", "--model", str(bundle), *args, "--to", "depth", "--out", str(tmp_path / "o")])
        assert (rc, capsys.readouterr().err) == (2, f"polymodal generate: {message}\n")
        assert not (tmp_path / "o").exists()
