"""Run logging on rank 0: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard scalars, and a PNG of
the loss curves at the end.

A kill while a line is appended leaves a torn last line; a resume drops it (with a `TornMetricsLine` warning) and
rewrites the file atomically, so the file always reads as whole records.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from .files import write_text_atomic


class TornMetricsLine(UserWarning):
    """A line of metrics.jsonl that is not a whole JSON record (cut by a kill) was dropped."""


def _parse(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of a metrics.jsonl text and the (1-based) numbers of the lines that are not whole records."""
    records, bad = [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(i)
    return records, bad


class MetricsLogger:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int = 0):
        self.dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        self._truncate_after(resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step or None)
            except ImportError:  # tensorboard is optional at run time
                self.writer = None

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records past the checkpoint (and torn lines) so the file reads as one uninterrupted
        run; the rewrite is atomic, so a kill during it leaves the old file."""
        if not self.path.exists():
            return
        records, bad = _parse(self.path.read_text(errors="replace"))
        if bad:
            warnings.warn(f"{self.path}: dropped line(s) {', '.join(map(str, bad))}, not whole JSON records "
                          "(cut by a kill)", TornMetricsLine, stacklevel=3)
        keep = [r for r in records if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The whole records of a metrics.jsonl (a torn line is left out); [] for a missing file."""
    path = Path(path)
    return _parse(path.read_text(errors="replace"))[0] if path.exists() else []


def plot_loss_curves(metrics_path: str | Path, out_png: str | Path) -> Path | None:
    """Training loss (total and per modality) and validation loss against step, as a PNG."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(("train/loss", "val/loss")) and isinstance(v, float) and math.isfinite(v):
                series.setdefault(k, []).append((r["step"], v))
    for k, pts in sorted(series.items()):
        ax = axes[0] if k.startswith("train/") else axes[1]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=k.split("/", 1)[1], lw=2 if k.endswith("/loss") else 1)
    for ax, title in zip(axes, ("training loss", "validation loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
