"""Runs in separate processes: torchrun data parallelism on CPU (gloo), and a SIGKILL in the middle of training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .helpers import ROOT, assert_same_weights, cli_args, release_weights

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(nproc: int, out_dir, *overrides: str) -> subprocess.CompletedProcess:
    args = cli_args(out_dir, *overrides)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "polymodal", *args[3:]]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if "train/loss" in json.loads(x)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_reach_the_same_loss_as_one(tmp_path, mode):
    _torchrun(1, tmp_path / "one", "train.steps=8")
    two_proc = _torchrun(2, tmp_path / "two", "train.steps=8", f"train.parallel={mode}")
    assert "returned a view tensor" not in two_proc.stderr  # FSDP2's warning about FourM's outputs, by design
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (one, two)
    assert_same_weights(release_weights(tmp_path / "one"), release_weights(tmp_path / "two"), atol=2e-5)


@pytest.mark.slow
def test_sigkill_then_rerun_ends_with_the_same_weights(tmp_path):
    straight = subprocess.run(cli_args(tmp_path / "straight", "train.steps=24"), cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=240)
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = tmp_path / "killed"
    args = cli_args(run, "train.steps=24")
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckdir = run / "checkpoints"
    while time.time() < deadline:  # kill as soon as the second checkpoint exists, mid-way through the run
        if ckdir.exists() and len([p for p in ckdir.iterdir() if p.name.startswith("step_")]) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "release").exists(), "the run finished before it could be killed"
    rerun = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_weights(release_weights(tmp_path / "straight"), release_weights(run))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == list(range(2, 25, 2)), f"metrics.jsonl repeats or loses steps after the resume: {steps}"
