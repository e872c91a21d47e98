"""The README runs as written: every command of its ```bash blocks in README order, then every ```python block, in
one temporary working folder (so that later commands find what earlier ones wrote, as a reader's would).

What changes, and why, is stated here and nowhere else:
- `SIZES`: small sizes where the README states large ones (scenes, steps, bootstrap rounds), the same in every
  command; `COMMANDS[...]` adds what a command needs beyond that (e.g. a training's batch size).
- `PLACEHOLDERS`: the names the README marks as yours (BUNDLE, MODEL, img.png, photos/, ...) become real small
  values: the shipped bundle, world scenes rendered into the folder, the 4M checkpoint fixture.
- A command with optional ``[...]`` parts runs with all of them; `BARE` ones also run without any (the first run
  of a newcomer, who gives only what is required).
- `COMMANDS` lists every bash command of the README, to run or to skip with a reason: a command added to the
  README and not to that table fails `test_every_readme_command_is_run_or_skipped`, as does an entry the README no
  longer holds. Python blocks need no entry: each runs whole, with `PYTHON_STAND_INS` for its placeholders.

`polymodal` commands run in this process (`polymodal.cli.main`, one torch import for all); `serve` and `torchrun`
run as processes, as they must. The tests of this file depend on each other's files: run the file as a whole.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FIXTURES, ROOT, fixtures_missing

README = ROOT / "README.md"
BUNDLE = ROOT / "src" / "polymodal" / "weights" / "default"
TOKS = BUNDLE / "tokenizers"
CHECKPOINT_4M = FIXTURES / "ml4m-4m21-tiny"
TEXT_4M = FIXTURES / "ml4m-text-tokenizer" / "text_tokenizer_4m_wordpiece_30k.json"

SIZES = [("--n 2000", "--n 8"), ("--n 200", "--n 4"), ("--bootstrap 500", "--bootstrap 20"),
         ("train.steps=300", "train.steps=2")]
PLACEHOLDERS = [("--model path/to/4M-21_B", f"--model {CHECKPOINT_4M}"), ("text_tokenizer_4m_wordpiece_30k.json",
                                                                          str(TEXT_4M)),
                ("--model BUNDLE", f"--model {BUNDLE}"), ("--model MODEL", f"--model {BUNDLE}"),
                ("depth=SPECIALIST_BUNDLE", f"depth={BUNDLE}"), ("--image PATH", "--image img.png"),
                ("TOK_RGB", str(TOKS / "tok_rgb_64")), ("TOK_DEPTH", str(TOKS / "tok_depth_64"))]
# A training of a few steps on a few samples: what the README's trainings become (they state minutes to hours).
SHORT_TRAINING = ("train.steps=2 train.batch_size=8 train.log_every=1 train.eval_every=2 train.save_every=2 "
                  "train.progress=false data.val_samples=4")


@dataclass(frozen=True)
class Step:
    """How the test runs one README command: ``extra`` arguments appended, ``replace`` pairs applied after the
    common ones; ``skip``: why it does not run; ``xfail``: a known failure being fixed; ``slow``: over ~5 s."""
    extra: str = ""
    replace: tuple[tuple[str, str], ...] = ()
    skip: str = ""
    xfail: str = ""
    slow: bool = False
    needs_4m: bool = False
    server: bool = False


COMMANDS: dict[str, Step] = {
    'python3 -m venv .venv && . .venv/bin/activate': Step(skip="makes the environment this test runs in"),
    'pip install -e ".[dev,text]"': Step(skip="installs from the network"),
    'polymodal demo': Step(),
    'python -m pytest -q': Step(skip="the whole test suite, which holds this test"),
    'polymodal data synth --out data/world64 --n 2000 --res 64 --workers 2 --text-embeddings': Step(),
    'polymodal data show data/world64 --out grid.png': Step(),
    'polymodal tokenizer train configs/tokenizer_rgb_world64.py': Step(
        extra=f"{SHORT_TRAINING} data.num_samples=16", slow=True),
    'polymodal tokenizer train configs/tokenizer_minilm_global_world64.py': Step(
        extra=f"{SHORT_TRAINING} data.num_samples=8", slow=True),
    'polymodal tokenizer train-text --corpus captions.txt --vocab-size 8000 --out text_tok': Step(),
    'polymodal train configs/fourm_tiny_cpu.py train.steps=300': Step(extra=SHORT_TRAINING, slow=True),
    'torchrun --nproc_per_node 2 -m polymodal train configs/fourm_tiny_cpu.py train.parallel=fsdp': Step(
        # 16 validation samples: a rank left without one stops FSDP in a collective mismatch (reported, issue 16)
        extra=f"{SHORT_TRAINING} train.batch_size=16 data.val_samples=16 train.out_dir=runs/fourm_tiny_fsdp",
        slow=True),
    'polymodal data label --images photos/ --out data/photos --labelers canny palette metadata': Step(),
    'polymodal data label --images photos/ --out data/photos_d --labelers hf-depth --model '
    'hf-depth=DPT_FOLDER_OR_ID': Step(skip="downloads a DPT depth model from the network"),
    'polymodal data import --images photos/ --out data/photos_rgb': Step(),
    'polymodal data tokenize data/world64 --tokenizer rgb=TOK_RGB depth=TOK_DEPTH caption=text_tok det=text_tok '
    '--crops 4 --out data/world64_tokens --workers 2': Step(),
    # workers=0: run in this process, a forked loader worker can inherit a lock held by earlier tests' threads
    'POLYMODAL_TOKENS=data/world64_tokens polymodal train configs/fourm_tokens_world64.py': Step(
        extra=f"{SHORT_TRAINING} data.workers=0", slow=True),
    'polymodal generate [--model BUNDLE] --from rgb=img.png --from caption="two red cubes" --to depth,det --out out/ '
    '[--steps 8 --temperature 0.5 --guidance 2 --seed 0 --no-resize]': Step(),
    'polymodal generate --model BUNDLE --from rgb=img.png --plan rgb_to_all --out out/': Step(),
    'polymodal generate --model EPFL-VILAB/4M-21_XL --text-tokenizer text_tokenizer_4m_wordpiece_30k.json '
    '--from rgb=photo.jpg --plan rgb_to_all --out out/': Step(skip="downloads 4M-21_XL and its tokenizers"),
    'polymodal generate --model EPFL-VILAB/4M-21_XL --text-tokenizer text_tokenizer_4m_wordpiece_30k.json '
    '--from caption="a red bus on a city street" --plan caption_to_all --decode-steps 25 --sampler ddim --out out/':
        Step(skip="downloads 4M-21_XL and its tokenizers"),
    'polymodal generate --model EPFL-VILAB/4M-21_XL --text-tokenizer text_tokenizer_4m_wordpiece_30k.json '
    '--from rgb=photo.jpg --plan rgb_to_all --index runs/dinov2_gallery --k 5 --out out/':
        Step(skip="downloads 4M-21_XL and its tokenizers (tests/pipeline/test_official_captions.py runs it on the "
                  "fixture release)"),
    # The fixture release's depth tokenizer stands for the released one; 2 diffusion steps keep it short.
    'polymodal generate --model path/to/4M-21_B --text-tokenizer text_tokenizer_4m_wordpiece_30k.json '
    '--tokenizer tok_depth@224=path/to/depth_tokenizer --from rgb=img.png --to depth,caption --out out/': Step(
        needs_4m=True, extra="--decode-steps 2 --sampler ddim", replace=(
            ("path/to/depth_tokenizer", str(FIXTURES / "ml4m-4m21-tiny-tokenizers" / "tok_depth@224")),)),
    'polymodal demo [--model BUNDLE] [--image PATH] [--out demo/]': Step(),
    'polymodal bundle --model RUN/release --tokenizer TOK_RGB TOK_DEPTH ... --text-tokenizer TEXT_TOK --out BUNDLE':
        Step(replace=(("RUN/release", str(BUNDLE / "model")),
                      ("TOK_RGB TOK_DEPTH ...", " ".join(str(p) for p in sorted(TOKS.glob("tok_*")))),
                      ("TEXT_TOK", str(TOKS / "text")), ("--out BUNDLE", "--out my_bundle"))),
    'polymodal data synth --out data/world64 --n 2000 --res 64 --text-embeddings': Step(),
    'polymodal retrieve build data/world64 --out runs/gallery': Step(),
    'polymodal retrieve search runs/gallery --samples 0 1 2 --k 5': Step(),
    'polymodal retrieve --model BUNDLE --index runs/gallery --from rgb=img.png [--from caption="two red cubes"] '
    '[--k 5 --out matches.png]': Step(),
    'pip install -e ".[serve]"': Step(skip="installs from the network"),
    'POLYMODAL_REFERENCE=path/to/ml-4m python benchmarks/vs_reference.py --threads 2 --json out.json':
        Step(skip="a benchmark (minutes) that needs an apple/ml-4m checkout and its dependencies"),
    'polymodal serve [--model BUNDLE] [--port 8000] [--host 127.0.0.1]': Step(server=True),
    'polymodal eval --model MODEL --n 200 --out runs/eval --ceiling': Step(slow=True),
    'polymodal eval --model MODEL --compare depth=SPECIALIST_BUNDLE --tasks depth,normal,semseg,det,caption '
    '--bootstrap 500': Step(extra="--n 4", slow=True),
    # Its base recipe (the default model's) reads data/world64_tokens: the tokens written by the tokenize command.
    'POLYMODAL_SPECIALIST=depth polymodal train configs/specialist_world64.py': Step(
        extra=f"{SHORT_TRAINING} data.workers=1", slow=True),
    'polymodal embed [--model MODEL] --images photos/ --out features.safetensors [--tokens]': Step(),
    'polymodal probe --model MODEL --train 2000 --test 500 --bootstrap 500 --out runs/probe': Step(
        extra="--train 20 --test 5", slow=True),
}
# Commands with optional parts that also run bare: a newcomer's first try relies on the defaults.
BARE = {
    'polymodal generate [--model BUNDLE] --from rgb=img.png --from caption="two red cubes" --to depth,det --out out/ '
    '[--steps 8 --temperature 0.5 --guidance 2 --seed 0 --no-resize]',
    'polymodal retrieve --model BUNDLE --index runs/gallery --from rgb=img.png [--from caption="two red cubes"] '
    '[--k 5 --out matches.png]',
    'polymodal embed [--model MODEL] --images photos/ --out features.safetensors [--tokens]',
}


def readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def bash_commands() -> list[str]:
    """Every command of the README's bash blocks: continued lines joined, trailing ``# comments`` dropped,
    whitespace runs made one space."""
    out = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#(\s.*)?$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


def variants(command: str) -> list[tuple[str, str]]:
    """(label, command to run): with every ``[...]`` part, and for `BARE` commands also without any."""
    full = re.sub(r"\[([^\]]*)\]", r"\1", command)
    runs = [("full", full)]
    if command in BARE:
        runs.append(("bare", " ".join(re.sub(r"\[[^\]]*\]", "", command).split())))
    return runs


def concrete(command: str, step: Step) -> str:
    for old, new in (*SIZES, *step.replace, *PLACEHOLDERS):
        command = command.replace(old, new)
    return f"{command} {step.extra}".strip()


def _cases():
    for command in dict.fromkeys(bash_commands()):
        step = COMMANDS.get(command, Step(skip="not in COMMANDS (test_every_readme_command_is_run_or_skipped)"))
        for label, text in variants(command):
            marks = [pytest.mark.slow] if step.slow else []
            if step.xfail:
                marks.append(pytest.mark.xfail(strict=False, reason=step.xfail))
            yield pytest.param(text, step, id=f"{label}: {command[:70]}", marks=marks)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The reader's working folder: the recipes, a world scene as img.png, two in photos/, captions.txt."""
    from polymodal.data.world import render_sample

    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", root / "configs")
    scenes = [render_sample(1, i, 64) for i in range(3)]
    Image.fromarray(scenes[0]["rgb"]).save(root / "img.png")
    (root / "photos").mkdir()
    for i, s in enumerate(scenes[1:]):
        Image.fromarray(s["rgb"]).save(root / "photos" / f"photo{i}.png")
    (root / "captions.txt").write_text("\n".join(render_sample(0, i, 64)["caption"] for i in range(40)) + "\n")
    return root


def test_every_readme_command_is_run_or_skipped():
    found = set(bash_commands())
    new = sorted(found - set(COMMANDS))
    gone = sorted(set(COMMANDS) - found)
    assert not new, f"README commands that tests/test_readme.py neither runs nor skips (add them to COMMANDS): {new}"
    assert not gone, f"COMMANDS entries the README no longer shows (remove them): {gone}"
    assert BARE <= set(COMMANDS)


@pytest.mark.parametrize("command, step", list(_cases()))
def test_readme_command(command, step, folder, monkeypatch, capsys):
    if step.skip:
        pytest.skip(step.skip)
    if step.needs_4m and not CHECKPOINT_4M.exists():
        fixtures_missing(CHECKPOINT_4M)  # skips, or fails in CI
    monkeypatch.chdir(folder)
    text = concrete(command, step)
    if step.server:
        return _serve(text, folder)
    argv = shlex.split(text)
    env = {}
    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    # Trainings run in their own process: a forked data-loader worker of this (long, many-threaded) test process
    # can inherit a lock held by another thread and hang, which a fresh CLI process never meets.
    if argv[0] == "torchrun" or argv[1:2] == ["train"]:
        return _process(argv, env, folder)
    assert argv[0] == "polymodal", f"a command this test cannot run: {text}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the session keeps one thread (conftest)
    from polymodal.cli import main

    try:
        rc = main(argv[1:])
    except SystemExit as e:  # a command's own one-line failure, or argparse's
        rc = e.code if isinstance(e.code, int) else f"{e.code}"
    out = capsys.readouterr()
    assert rc in (0, None), f"`{text}` failed ({rc}):\n{out.out[-2000:]}\n{out.err[-2000:]}"


def _child_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), **env}


def _process(argv: list[str], env: dict[str, str], folder: Path) -> None:
    exe = shutil.which(argv[0]) or str(Path(sys.executable).parent / argv[0])
    r = subprocess.run([exe, *argv[1:]], cwd=folder, env=_child_env(env), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"`{' '.join(argv)}` failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def _serve(text: str, folder: Path) -> None:
    """Start the server as the README says (on a free port), fetch its page, stop it with Ctrl-C."""
    from polymodal.serve.server import free_port

    port = free_port()
    argv = shlex.split(text.replace("--port 8000", f"--port {port}"))
    proc = subprocess.Popen([sys.executable, "-m", "polymodal", *argv[1:]], cwd=folder, env=_child_env({}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # the address, printed once the port is bound
        url = re.search(r"http://\S+/", line)
        assert url, f"`{text}` printed no address: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
        for attempt in range(60):  # the port is bound before the address is printed; it listens a moment later
            try:
                with urllib.request.urlopen(url.group(0), timeout=30) as r:
                    assert r.status == 200 and b"polymodal" in r.read()
                break
            except urllib.error.URLError:
                if attempt == 59 or proc.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _stand_in_batch():
    """A masked batch for the README's tiny model over rgb@224, tok_depth@224 and caption (the masking 4M trains
    with), standing for the README's ``batch``."""
    from polymodal.config import MaskingConfig
    from polymodal.data.masking import sample_batch
    from polymodal.modalities import get

    g = torch.Generator().manual_seed(0)
    names = ("rgb@224", "tok_depth@224", "caption")
    caption = torch.zeros(2, 12, dtype=torch.long)
    caption[:, :8] = torch.randint(300, 400, (2, 8), generator=g)
    caption[:, 8] = 3  # [EOS], then [PAD]
    raw = {"rgb@224": torch.rand(2, 3, 224, 224, generator=g),
           "tok_depth@224": torch.randint(0, get("tok_depth@224").vocab_size, (2, 196), generator=g),
           "caption": caption}
    return sample_batch(raw, {n: get(n) for n in names}, MaskingConfig(num_input_tokens=64, num_target_tokens=64),
                        generator=g)


@pytest.fixture(scope="module")
def stand_ins(folder) -> dict:
    """Names the README's Python uses without defining them: ``batch`` (`_stand_in_batch`), the shipped bundle's
    ``tokenizers``, token ``ids`` it generated from img.png, and that image as a batched tensor ``rgb``."""
    from polymodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(str(BUNDLE))
    rgb = torch.from_numpy(np.array(Image.open(folder / "img.png").convert("RGB"))).permute(2, 0, 1)[None] / 255
    ids = pipe.generate({"rgb": str(folder / "img.png")}, ["depth", "det", "caption"], seed=0,
                        notify=lambda m: None).ids
    return {"batch": _stand_in_batch(), "tokenizers": pipe.tokenizers, "ids": ids, "rgb": rgb}


# The Hub id needs the network: the checkpoint fixture stands for it (tests/test_hub.py covers the Hub itself).
PYTHON_STAND_INS = [('"path/to/4M-21_B"', repr(str(CHECKPOINT_4M))), ('"EPFL-VILAB/4M-21_B"', repr(str(CHECKPOINT_4M))),
                    ('"BUNDLE"', repr(str(BUNDLE)))]


@pytest.mark.parametrize("index", range(len(readme_blocks("python"))),
                         ids=[b.strip().splitlines()[0][:60] for b in readme_blocks("python")])
def test_readme_python(index, folder, stand_ins, monkeypatch):
    code = readme_blocks("python")[index]
    if "4M-21_B" in code and not CHECKPOINT_4M.exists():
        fixtures_missing(CHECKPOINT_4M)  # skips, or fails in CI
    for old, new in PYTHON_STAND_INS:
        code = code.replace(old, new)
    monkeypatch.chdir(folder)
    namespace = {"__name__": "readme"} | stand_ins
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
