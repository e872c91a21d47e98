"""One run at a time in a run folder: a second `polymodal train` into a folder a run is using stops with one line
naming that run's pid, before it reads, clears or writes anything there; a lock left by a killed run, or by a run
that crashed in this process, does not block the rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from polymodal.cli import main

from .helpers import BASE, RECIPE, ROOT, cli_args

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _steps_saved(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))


def test_a_second_run_into_a_busy_folder_is_one_line_and_a_killed_runs_lock_does_not_block(tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen(cli_args(run, "train.steps=100000", "train.save_every=2", "train.keep_last=100000"),
                             cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "step_00000002").exists():  # the first run is training
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the first run never saved a checkpoint"
            time.sleep(0.1)
        second = ["train", str(RECIPE), *BASE, f"train.out_dir={run}", "train.steps=100000", "train.stop_at=4"]
        assert main(second) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"polymodal train: {run} is in use by another run (pid {first.pid}); wait for it to end, or "
                       "use another train.out_dir")
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        first.stderr.close()
    saved = _steps_saved(run)
    # The killed run's lock is gone with it: the rerun (to a step the first run has passed) writes the release.
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={run}", "train.steps=2"]) == 0
    assert (run / "release" / "model.safetensors").is_file() and _steps_saved(run)[: len(saved)] == saved


def test_a_run_that_crashed_in_this_process_does_not_hold_the_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={run}", "optim.base_lr=1e30"]) == 2  # diverges
    assert "loss is nan" in capsys.readouterr().err
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={tmp_path / 'run'}", "train.steps=2"]) == 0


HOLD_AND_FORK = """
import os, sys, time
from pathlib import Path
from polymodal.train.files import lock_run_folder
lock_run_folder(Path(sys.argv[1]))
child = os.fork()  # as a data-loader worker is started
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_a_forked_worker_that_outlives_its_killed_run_does_not_hold_the_lock(tmp_path):
    from polymodal.train.files import lock_run_folder, unlock_run_folder

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(run)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    child = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        unlock_run_folder(lock_run_folder(run))  # the run is dead: its folder is free, the worker still alive
    finally:
        os.kill(child, signal.SIGKILL)
        holder.stdout.close()
