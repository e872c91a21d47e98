"""scripts/gpu_check.sh in its CPU smoke mode: the GPU check's steps (torchrun with one process, a process group,
FSDP2, stop at a checkpoint, rerun; the training step eager and compiled; MaskGIT and caption generation) run with
gloo on the CPU at tiny shapes, so the script a borrowed GPU runs is known to work up to the device: a broken
section here is one that would fail there too."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_mode_passes_every_section(tmp_path):
    # PYTHON: this interpreter, whatever `python` on PATH is (a venv run without activating it has none with torch).
    env = {**os.environ, "GPU_CHECK_SMOKE": "1", "GPU_CHECK_OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"gpu_check: device cpu (smoke 1), output {tmp_path}"
    assert lines.index("== distributed") < lines.index("PASS distributed")
    assert "resumed vs uninterrupted: largest weight difference 0 (allowed 0)" in lines
    assert lines[-1] == "gpu_check: all sections passed (device cpu, smoke 1)"
    for name in ("distributed", "train_speed", "generation_speed"):
        assert f"== {name}" in lines and f"PASS {name}" in lines, name
    assert lines.index("PASS distributed") < lines.index("== train_speed") < lines.index("PASS train_speed") < \
        lines.index("== generation_speed") < lines.index("PASS generation_speed")
    # The figures, printed and in the JSON file to paste from.
    for key in ("eager", "compiled"):
        assert any(re.fullmatch(rf"train {key}: step [0-9.]+ ms, [0-9]+ tokens/s, [0-9.]+ TFLOP/s, MFU n/a of "
                                rf"nominal, [0-9.]+% of measured matmul \(warm-up [0-9.]+ s\)", x) for x in lines), key
    for key in ("maskgit", "maskgit_guided", "caption"):
        for b in (1, 4):
            assert any(x.startswith(f"generate {key} batch {b}: ") for x in lines), (key, b)
    speed = json.loads((tmp_path / "speed" / "speed.json").read_text())
    train, gen = speed["train"], speed["generate"]
    assert train["fsdp"] is True and train["device"] == "cpu" and train["nominal_bf16_flops"] is None
    assert train["flops_per_step"] > 0 and train["matmul_bf16_flops"] > 0
    for run in train["runs"].values():  # tokens/s and MFU follow from the step time
        assert run["tokens_per_s"] == pytest.approx(train["tokens_per_step"] / run["step_s"])
        assert run["mfu_matmul"] == pytest.approx(train["flops_per_step"] / run["step_s"] / train["matmul_bf16_flops"])
    assert set(gen["runs"]) == {f"{k}@{b}" for k in ("maskgit", "maskgit_guided", "caption") for b in (1, 4)}
    assert gen["runs"]["caption@4"]["tokens"] == 4 * 16  # the zeroed head: every caption runs to its 16 tokens
    assert gen["runs"]["maskgit@4"]["tokens"] == 4 * 196
    # The runs it compared exist, and asked for FSDP2 (applied under torchrun even with one process).
    d = tmp_path / "distributed"
    assert load_file(str(d / "straight" / "release" / "model.safetensors"))
    assert '"parallel": "fsdp"' in (d / "resumed" / "config.json").read_text()


def test_nominal_peak_by_card_name():
    spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "scripts" / "gpu_speed.py")
    gpu_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_speed)
    assert gpu_speed.nominal_peak("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert gpu_speed.nominal_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_speed.nominal_peak("NVIDIA H100 NVL") == 835e12
    assert gpu_speed.nominal_peak("NVIDIA H200") == 989e12
    assert gpu_speed.nominal_peak("NVIDIA GeForce RTX 4090") is None  # unknown: MFU against the measured matmul only
