"""scripts/gpu_check.sh in its CPU smoke mode: the GPU check's steps (torchrun with one process, a process group,
FSDP2, stop at a checkpoint, rerun) run with gloo on the CPU, so the script a borrowed GPU runs is known to work
up to the device: a broken section here is one that would fail there too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_mode_passes_every_section(tmp_path):
    env = {**os.environ, "GPU_CHECK_SMOKE": "1", "GPU_CHECK_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"gpu_check: device cpu (smoke 1), output {tmp_path}"
    assert lines.index("== distributed") < lines.index("PASS distributed")
    assert "resumed vs uninterrupted: largest weight difference 0 (allowed 0)" in lines
    assert lines[-1] == "gpu_check: all sections passed (device cpu, smoke 1)"
    # The runs it compared exist, and asked for FSDP2 (applied under torchrun even with one process).
    d = tmp_path / "distributed"
    assert load_file(str(d / "straight" / "release" / "model.safetensors"))
    assert '"parallel": "fsdp"' in (d / "resumed" / "config.json").read_text()
