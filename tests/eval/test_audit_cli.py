"""`polymodal eval` and `polymodal probe` with bad input found by the session 9 audit: one line on stderr, exit code
2 and nothing written, where before each was a traceback (eval: --n 0 or -1, --bootstrap -1, --batch-size 0,
--res 5, --world-seed -1, --out naming a file, a data folder with a corrupt shard; probe: --out naming a file,
after the fits) or a line naming nothing the user typed (probe --batch-size 0: "range() arg 3 must not be zero",
--seed -1: "expected non-negative integer"); eval --tasks "" wrote an empty table, and --n past the data scored
fewer scenes without a word."""

from __future__ import annotations

import pytest

from polymodal.cli import main
from polymodal.data.world import synthesize

from ..pipeline.conftest import build_pipeline


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit_eval")
    bundle = build_pipeline(tmp_path_factory).save(d / "tiny")
    synthesize(d / "world", 2, 64, seed=1, shard_size=2)
    synthesize(d / "broken", 2, 64, seed=1, shard_size=2)
    shard = d / "broken" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    (d / "a_file").write_text("not a folder")
    return d, bundle


def _refused(args, capsys) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("extra, said", [
    (["--n", "0"], "polymodal eval: --n must be at least 1, got 0\n"),
    (["--n", "-1", "--data", "WORLD"], "polymodal eval: --n must be at least 1, got -1\n"),
    (["--bootstrap", "-1"], "polymodal eval: --bootstrap must be at least 0, got -1\n"),
    (["--batch-size", "0"], "polymodal eval: --batch-size must be at least 1, got 0\n"),
    (["--examples", "-1"], "polymodal eval: --examples must be at least 0, got -1\n"),
    (["--tasks", " , "], "polymodal eval: --tasks names no task; tasks: depth, normal, semseg, det, caption, "
                          "retrieval, caption2rgb, det2rgb\n"),
    (["--out", "A_FILE"], "polymodal eval: --out A_FILE is a file, not a folder\n"),
    (["--res", "5"], "polymodal eval: resolution must be an integer from 32 to 1024 pixels, got 5\n"),
    (["--world-seed", "-1"], "polymodal eval: seed and index must be non-negative, got seed=-1, index=0\n"),
    (["--data", "BROKEN"], "polymodal eval: shard BROKEN/shard-000000.tar is truncated or corrupt"),
])
def test_eval_refuses_in_one_line(files, tmp_path, capsys, extra, said):
    d, bundle = files
    subst = {"WORLD": str(d / "world"), "BROKEN": str(d / "broken"), "A_FILE": str(d / "a_file")}
    args = [subst.get(a, a) for a in extra]
    out = tmp_path / "report"
    err = _refused(["eval", "--model", str(bundle), "--n", "2", "--tasks", "depth", "--out", str(out), "--quiet",
                    *args], capsys)
    for k, v in subst.items():
        said = said.replace(k, v)
    assert err.startswith(said), err
    assert not out.exists()


def test_eval_says_when_the_data_holds_fewer_scenes_than_n(files, tmp_path, capsys):
    d, bundle = files
    out = tmp_path / "report"
    assert main(["eval", "--model", str(bundle), "--data", str(d / "world"), "--n", "5", "--tasks", "depth",
                 "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"notice: {d / 'world'} holds 2 samples; scoring those 2 (--n 5)\n" in err
    assert "on 2 samples of" in (out / "results.md").read_text()


@pytest.mark.parametrize("extra, said", [
    (["--batch-size", "0"], "polymodal probe: --batch-size must be at least 1, got 0\n"),
    (["--seed", "-1", "--bootstrap", "3"], "polymodal probe: --seed must be at least 0, got -1\n"),  # numpy's words
    (["--out", "A_FILE"], "polymodal probe: --out A_FILE is a file, not a folder\n"),
])
def test_probe_refuses_in_one_line_before_any_fit(files, capsys, monkeypatch, extra, said):
    from polymodal.eval import probe

    d, bundle = files
    monkeypatch.setattr(probe, "world_scenes", lambda *a, **k: pytest.fail("rendered scenes before refusing"))
    args = [str(d / "a_file") if a == "A_FILE" else a for a in extra]
    err = _refused(["probe", "--model", str(bundle), "--train", "10", "--test", "2", "--quiet", *args], capsys)
    assert err == said.replace("A_FILE", str(d / "a_file"))


@pytest.mark.parametrize("command", ["eval", "probe"])
def test_an_out_below_a_file_is_refused_before_any_work(files, capsys, monkeypatch, command):
    """The commands' one --out check (`pipeline.outputs.check_out`): a file where a folder above --out would be
    made was found only when the report was written, after the scoring or the fits."""
    from polymodal.eval import probe

    d, bundle = files
    monkeypatch.setattr(probe, "world_scenes", lambda *a, **k: pytest.fail("rendered scenes before refusing"))
    out = d / "a_file" / "report"
    extra = ["--n", "1", "--tasks", "depth"] if command == "eval" else ["--train", "10", "--test", "2"]
    err = _refused([command, "--model", str(bundle), *extra, "--out", str(out), "--quiet"], capsys)
    assert err == f"polymodal {command}: --out {out}: {d / 'a_file'} is a file, not a folder\n"


@pytest.mark.parametrize("compare, said", [
    (["--compare", "tiny=BUNDLE"], "polymodal eval: --compare tiny=BUNDLE: tiny is the model's own column; give the "
                                   "compared model another name\n"),
    (["--compare", "tokenizer ceiling=BUNDLE", "--ceiling"],
     "polymodal eval: --compare tokenizer ceiling=BUNDLE: tokenizer ceiling is the --ceiling column; give the "
     "compared model another name\n"),
    (["--compare", "x=BUNDLE", "--compare", "x=BUNDLE"], "polymodal eval: --compare x is given twice; give each "
                                                         "compared model its own name\n"),
])
def test_eval_refuses_a_compare_name_that_would_replace_a_column(files, tmp_path, capsys, compare, said):
    """Before, the compared model's scores silently replaced the model's own column (or the ceiling's, or the first
    of two compared models), and the gap table compared a model with itself."""
    d, bundle = files
    out = tmp_path / "report"
    args = [a.replace("BUNDLE", str(bundle)) for a in compare]
    err = _refused(["eval", "--model", str(bundle), "--n", "1", "--tasks", "depth", "--out", str(out), "--quiet",
                    *args], capsys)
    assert err == said.replace("BUNDLE", str(bundle)) and not out.exists()


@pytest.mark.parametrize("source", [["--res", "32"], ["--data", "WORLD32"]])
def test_eval_refuses_scenes_of_another_resolution_than_the_model(files, tmp_path, capsys, source):
    """A 64 px model on 32 px scenes: depth failed on the shapes, and boxes were scored in the model's pixels
    against the scene's (mAP silently 0). Now refused in one line, naming both sizes."""
    d, bundle = files
    world32 = d / "world32"
    if not world32.exists():
        synthesize(world32, 1, 32, seed=1)
    out = tmp_path / "report"
    args = [str(world32) if a == "WORLD32" else a for a in source]
    err = _refused(["eval", "--model", str(bundle), "--n", "1", "--tasks", "det", "--out", str(out), "--quiet",
                    *args], capsys)
    assert err.startswith("polymodal eval: tiny reads 64 px images, the test scenes are 32 px"), err
    assert "--res 64" in err and not out.exists()
