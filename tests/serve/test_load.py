"""A small bounded load test on loopback (the full one: benchmarks/serve_load.py): 8 clients at once against a real
uvicorn server; every request answered with its own job, the queue drains, the server still answers, and its
memory stays near its level."""

from __future__ import annotations

import gc
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from polymodal.serve import ServerThread

from .conftest import png_url


def _rss_mib() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _client(url: str, i: int) -> dict:
    with httpx.Client(base_url=url, timeout=30) as c:
        body = {"inputs": {"rgb": png_url(1, i % 3)}, "targets": ["depth", "caption"], "steps": 2, "seed": i}
        job = c.post("/api/generate", json=body).json()
        first = job["position"]
        end = time.monotonic() + 120
        while job["state"] in ("queued", "running") and time.monotonic() < end:
            time.sleep(0.05)
            job = c.get(f"/api/jobs/{job['id']}").json()
        return job | {"first_position": first}


def test_concurrent_requests_are_all_answered(app):
    n = 8
    with ServerThread(app) as url:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda i: _client(url, i), range(2)))  # warm up
            gc.collect()
            before = _rss_mib()
            jobs = list(pool.map(lambda i: _client(url, i), range(n)))
        gc.collect()
        grown = _rss_mib() - before
        assert httpx.get(url + "api/info").json()["waiting"] == 0
    assert [j["state"] for j in jobs] == ["done"] * n
    assert len({j["id"] for j in jobs}) == n
    assert max(j["first_position"] for j in jobs) >= 2  # they did queue behind each other
    assert grown < 60, f"RSS grew {grown:.1f} MiB over {n} jobs"
