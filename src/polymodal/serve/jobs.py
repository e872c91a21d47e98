"""A request queue for the web demo: one worker thread runs jobs in the order they came.

The model runs one job at a time on purpose: two generations at once would share the same CPU cores (each slower)
and the same model. A second user's job waits with a visible position instead. Finished jobs are kept for a while
(their results are fetched by polling and the zip is downloaded afterwards), at most ``keep`` of them, so memory
stays bounded however long the server runs.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int, int, str], None]  # (step done, steps in all, what it is working on)
Work = Callable[[Progress], Any]


class QueueFull(RuntimeError):
    """More jobs waiting than the queue takes; the API answers 503 and the page says to try again."""


@dataclass
class Job:
    id: str
    kind: str  # "generate" or "retrieve"
    work: Work
    state: str = "queued"  # queued -> running -> done | error
    step: int = 0
    total: int = 0
    doing: str = ""
    result: Any = None
    error: str = ""
    created: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


class JobQueue:
    """Jobs in, results out, one at a time. ``start=False`` leaves the worker stopped until `start` (tests use it
    to see queue positions without racing the worker)."""

    def __init__(self, *, max_waiting: int = 64, keep: int = 64, start: bool = True):
        self.max_waiting, self.keep = max_waiting, keep
        self._waiting: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        if start:
            self.start()

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="polymodal-serve-worker", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def submit(self, kind: str, work: Work) -> Job:
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"the server has {len(self._waiting)} jobs waiting; try again in a minute")
            # Unguessable: anyone who knows a job's id can poll it and download its outputs (there is no login),
            # so one user must not reach another's by counting (g1, g2, ...).
            job = Job(f"{kind[0]}-{secrets.token_urlsafe(12)}", kind, work)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._forget_old()
            self._cond.notify_all()
            return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """1 for the next job to run, 2 for the one after it, ...; 0 once running or finished."""
        with self._cond:
            for i, j in enumerate(self._waiting):
                if j is job:
                    return i + 1
            return 0

    def status(self, job: Job) -> dict:
        """What the page shows while it polls: state, queue position, step counts, error, seconds."""
        return {"id": job.id, "kind": job.kind, "state": job.state, "position": self.position(job),
                "step": job.step, "total": job.total, "doing": job.doing, "error": job.error,
                "seconds": round(job.seconds, 2)}

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def wait(self, job: Job, timeout: float = 60.0) -> Job:
        """Block until ``job`` is finished (tests, the load benchmark)."""
        end = time.monotonic() + timeout
        with self._cond:
            while job.state in ("queued", "running"):
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job.id} still {job.state} after {timeout} s")
                self._cond.wait(left)
        return job

    def _forget_old(self) -> None:
        # Oldest finished jobs go first; waiting and running ones are never dropped.
        done = [k for k, j in self._jobs.items() if j.state in ("done", "error")]
        for k in done[: max(0, len(done) - self.keep)]:
            del self._jobs[k]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._waiting.popleft()
                job.state = "running"
            start = time.monotonic()

            def progress(step: int, total: int, doing: str, job: Job = job) -> None:
                job.step, job.total, job.doing = step, total, doing

            try:
                result, state, error = job.work(progress), "done", ""
            except ValueError as e:  # bad input found late (the request checks catch most before queueing)
                result, state, error = None, "error", str(e)
            except Exception as e:  # noqa: BLE001 - the worker must survive any job
                traceback.print_exc()
                result, state, error = None, "error", f"internal error: {type(e).__name__}: {e}"
            with self._cond:
                job.result, job.error, job.seconds = result, error, time.monotonic() - start
                job.state = state
                job.work = None  # its closure holds the inputs: let them go
                self._forget_old()
                self._cond.notify_all()
