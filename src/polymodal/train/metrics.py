"""Run logging on rank 0: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard scalars, and a PNG of
the loss curves at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


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
        """On resume, drop records past the checkpoint so the file reads as one uninterrupted run."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

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
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


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
