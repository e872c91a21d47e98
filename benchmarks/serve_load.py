"""A bounded load test of the web demo on loopback: N concurrent clients each submit a generation job and poll it to
the end; every request must be answered, none lost, and the server's memory must come back to its level.

The server is a real uvicorn server in a thread of this process (`polymodal.serve.ServerThread`), so RSS is the
server's (plus this small client). Jobs run one at a time by design: the last of N waits for the N - 1 before it,
so latency grows linearly with the queue; what matters is that every job finishes and the queue drains.

    python benchmarks/serve_load.py                          # the tests' tiny untrained pipeline, 20 clients
    python benchmarks/serve_load.py --model BUNDLE --requests 20 --steps 8

Measured 2026-11-29 (torch 2.13 CPU, one thread, tiny test pipeline, depth + caption, 2 steps; 2 cores shared with
a training run):

    20 concurrent requests: 20 answered (20 distinct jobs), wall 4.0 s; server still answering: HTTP 200
    submit (202) max 0.77 s; job latency min 0.85 s, median 2.56 s, max 3.87 s; deepest queue position 19
    RSS 349 MiB before, 367 MiB after (+18.4 MiB), 375 MiB after a second round (+7.8 MiB; 20/20 answered)

The growth is the kept results of finished jobs (pictures and zips of the last `JobQueue.keep` = 64 jobs) and
allocator arenas; it levels off. The slowest 202 is a request checked (image decoded and tokenized) while the
worker holds the interpreter (checks run in a thread pool, off the event loop).
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

# The repo root instead of benchmarks/ (whose tokenizers.py would shadow the tokenizers package): tests.serve's
# tiny pipeline is the default model.
sys.path[0] = str(Path(__file__).resolve().parents[1])


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scene_url(index: int) -> str:
    from polymodal.data.world import render_sample

    buf = io.BytesIO()
    Image.fromarray(render_sample(1, index, 64)["rgb"]).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def one_client(url: str, body: dict, timeout: float = 600) -> dict:
    """Submit, poll to the end; returns {ok, state, first_position, submit_s, total_s, error}."""
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/generate", json=body)
        submit = time.perf_counter() - start
        if r.status_code != 202:
            return {"ok": False, "state": f"HTTP {r.status_code}", "error": r.text, "submit_s": submit,
                    "total_s": submit, "first_position": -1}
        job = r.json()
        first = job["position"]
        while job["state"] in ("queued", "running") and time.perf_counter() - start < timeout:
            time.sleep(0.1)
            job = c.get(f"/api/jobs/{job['id']}").json()
    return {"ok": job["state"] == "done", "state": job["state"], "error": job.get("error", ""), "id": job["id"],
            "submit_s": submit, "total_s": time.perf_counter() - start, "first_position": first}


def load_test(url: str, n: int, body_of, *, timeout: float = 600) -> list[dict]:
    """``n`` clients at once (``body_of(i)`` their request bodies); one result per client, in order."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: one_client(url, body_of(i), timeout), range(n)))


def summary(results: list[dict]) -> dict:
    total = sorted(r["total_s"] for r in results)
    return {"requests": len(results), "answered": sum(r["ok"] for r in results),
            "distinct_jobs": len({r.get("id") for r in results if r["ok"]}),
            "submit_ms_max": 1000 * max(r["submit_s"] for r in results),
            "latency_s_p50": statistics.median(total), "latency_s_max": total[-1],
            "latency_s_min": total[0], "max_position": max(r["first_position"] for r in results)}


def tiny_pipeline():
    from tests.serve.conftest import serve_pipeline

    class Factory:  # the one method of pytest's tmp_path_factory that the builder uses
        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(prefix=f"serve-load-{name}-"))

    return serve_pipeline(Factory())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a pipeline bundle (default: the tests' tiny untrained pipeline)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--targets", default="depth,caption")
    args = ap.parse_args()
    import torch

    from polymodal.pipeline import Pipeline
    from polymodal.serve import ServerThread, create_app

    torch.set_num_threads(1)
    pipe = Pipeline.from_pretrained(args.model) if args.model else tiny_pipeline()
    app = create_app(pipe)
    images = [scene_url(i) for i in range(4)]
    body_of = lambda i: {"inputs": {"rgb": images[i % 4]}, "targets": args.targets.split(","),  # noqa: E731
                         "steps": args.steps, "seed": i}
    with ServerThread(app) as url:
        load_test(url, 2, body_of)  # warm up: first-call allocations are not a leak
        gc.collect()
        before = rss_mib()
        t0 = time.perf_counter()
        results = load_test(url, args.requests, body_of)
        wall = time.perf_counter() - t0
        gc.collect()
        after = rss_mib()
        # A second round: memory that the first kept for good (allocator arenas, the kept results of finished
        # jobs, at most `JobQueue.keep`) does not grow again; a leak would.
        again = load_test(url, args.requests, body_of)
        gc.collect()
        after2 = rss_mib()
        alive = httpx.get(url + "api/info").status_code
    s = summary(results)
    print(f"{s['requests']} concurrent requests on {url}: {s['answered']} answered ({s['distinct_jobs']} distinct "
          f"jobs), wall {wall:.2f} s; server still answering: HTTP {alive}")
    print(f"submit (202) max {s['submit_ms_max']:.0f} ms; job latency min {s['latency_s_min']:.2f} s, median "
          f"{s['latency_s_p50']:.2f} s, max {s['latency_s_max']:.2f} s; deepest queue position {s['max_position']}")
    print(f"RSS {before:.0f} MiB before, {after:.0f} MiB after ({after - before:+.1f} MiB), {after2:.0f} MiB after a "
          f"second round ({after2 - after:+.1f} MiB; {sum(r['ok'] for r in again)}/{len(again)} answered)")
    for r in results + again:
        if not r["ok"]:
            print(f"  failed: {r['state']} {r['error']}")


if __name__ == "__main__":
    main()
