"""Kill-and-resume with two processes (gloo on CPU), DDP and FSDP2: both ranks are SIGKILLed right after a
checkpoint, as a machine that dies would take them, and the rerun ends with the weights of a run that never stopped.

The two ranks are started here with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK)
rather than by torchrun, whose workers run in sessions of their own: this way each rank's pid is known and both
die at once. The comparison is bit for bit: a resumed run has the same process count, the same data and masks per
step, and the checkpoint holds the full weights, optimizer moments and random state, so every float operation of
the remaining steps repeats exactly (gloo's sums over the same two ranks in the same order included).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from polymodal.train.metrics import read_metrics

from .helpers import ROOT, assert_same_weights, cli_args, release_weights

STEPS = ("train.steps=8", "train.save_every=4", "train.log_every=2")


def _launch(out_dir, mode: str) -> list[subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = cli_args(out_dir, *STEPS, f"train.parallel={mode}")
    return [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": str(port), "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r)})
            for r in range(2)]


def _finish(procs: list[subprocess.Popen]) -> None:
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_sigkill_of_both_ranks_then_rerun_ends_with_the_same_weights(tmp_path, mode):
    straight = tmp_path / "straight"
    _finish(_launch(straight, mode))
    run = tmp_path / "killed"
    procs = _launch(run, mode)
    first = run / "checkpoints" / "step_00000004"
    deadline = time.time() + 120
    while not (first / "state.json").exists() and time.time() < deadline:  # the rename makes it whole at once
        time.sleep(0.02)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.communicate()
    assert first.exists() and not (run / "release").exists(), "killed too late: the run had finished"
    _finish(_launch(run, mode))
    assert_same_weights(release_weights(straight), release_weights(run))
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]
    assert steps == list(range(2, 9, 2)), f"metrics.jsonl repeats or loses steps after the resume: {steps}"
    losses = [[r["train/loss"] for r in read_metrics(d / "metrics.jsonl") if "train/loss" in r]
              for d in (straight, run)]
    assert losses[0] == losses[1]
