"""`train.step.keep_freed_memory`: after it, memory a step frees is reused by the next step without page faults
(run in a fresh process: the setting is process-wide)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, sys, torch
from polymodal.train.step import keep_freed_memory
changed = keep_freed_memory() if sys.argv[1] == "keep" else False
# a step's pattern: a few gradient-sized blocks (the largest over glibc's 32 MB mmap ceiling), freed, again
sizes = [(30000, 96), (30000, 384), (8192, 384), (1024, 1024), (30000, 384)]
faults = []
for i in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(s).fill_(1.0) for s in sizes]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"changed": changed, "faults": faults}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_gradient_memory_is_reused_without_page_faults():
    kept, plain = _faults("keep"), _faults("plain")
    assert kept["changed"] is True
    pages = (2 * 30000 * 384 + 30000 * 96 + 8192 * 384 + 1024 * 1024) * 4 // 4096
    # without it, every block is mapped afresh each time (its pages faulted in again); with it, after a few rounds
    # of settling (the heap's free blocks find their sizes), none is
    assert min(plain["faults"][-4:]) > 0.5 * pages
    assert max(kept["faults"][-4:]) < 0.01 * pages
