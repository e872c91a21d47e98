"""Evaluation reports: one Markdown table, the JSON of every number, a bar chart drawn with PIL, example pictures.

    write_report({"4M": results, "tokenizer ceiling": ceiling, "specialist": spec}, "runs/eval")

Each entry of ``runs`` is what `evaluate` returns; the table has one row per (task, metric) and one column per
run, so a model sits beside its specialists and its tokenizers' ceilings. Per-class dicts (``ap``, ``iou``) stay
in the JSON only. The figure shows each task's headline metric (`tasks.HEADLINE`, all "higher is better", 0..1).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw

from .bootstrap import LOWER_IS_BETTER
from .examples import example_grid
from .tasks import HEADLINE, TASKS

__all__ = ["LOWER_IS_BETTER", "WITHIN", "bar_chart", "gap_table", "markdown_table", "rows", "verdict", "write_report"]
PALETTE = ((66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def rows(runs: Mapping[str, dict]) -> list[tuple[str, str, list]]:
    """(task, metric, value per run or None) for every scalar metric, tasks in `TASKS` order."""
    out = []
    for task in TASKS:
        metrics: dict[str, None] = {}
        for r in runs.values():
            for m, v in r["tasks"].get(task, {}).items():
                if isinstance(v, (int, float)) or m == "skipped":
                    metrics.setdefault(m)
        for m in metrics:
            out.append((task, m, [r["tasks"].get(task, {}).get(m) for r in runs.values()]))
    return out


def markdown_table(runs: Mapping[str, dict]) -> str:
    """The Markdown table of ``runs`` (see the module doc); lower-is-better metrics say so; a run scored with
    `evaluate(..., bootstrap=k)` shows each value's 95% interval beside it."""
    names = list(runs)
    lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for task, metric, values in rows(runs):
        label = f"{metric} (lower is better)" if metric in LOWER_IS_BETTER else metric
        cells = []
        for r, v in zip(runs.values(), values):
            ci = r["tasks"].get(task, {}).get("ci95", {}).get(metric)
            cells.append("" if v is None else _fmt(v) + (f" ({_fmt(ci[0])}–{_fmt(ci[1])})" if ci else ""))
        lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:+.1f}%"


WITHIN = -0.10  # 4M-21's claim: the any-to-any model within 10% (relative) of a specialist


def verdict(gap: Mapping[str, float], *, within: float = WITHIN) -> str:
    """Whether a paired gap is within ``within`` of the other model: "yes" when its whole interval is above,
    "no" when it is below, "undecided" when the interval straddles it (more test scenes would tell)."""
    lo, hi = gap.get("lo", math.nan), gap.get("hi", math.nan)
    if math.isnan(lo) or math.isnan(hi):
        return "–"
    return "yes" if lo >= within else "no" if hi < within else "undecided"


def gap_table(model: str, gaps: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """Markdown: ``model`` against each other run, ``gaps[other][task][metric] = {"gap", "lo", "hi"}``
    (`bootstrap.paired_gaps`): the relative gap (positive: ``model`` is better), its 95% interval, and whether it
    is within 10% (`verdict`)."""
    others = list(gaps)
    lines = ["| task | metric | " + " | ".join(f"{model} vs {o}" for o in others) + " |",
             "|---|---|" + "---|" * len(others)]
    keys = [(t, m) for t in TASKS for m in dict.fromkeys(m for o in others for m in gaps[o].get(t, {}))]
    for task, metric in keys:
        cells = []
        for o in others:
            g = gaps[o].get(task, {}).get(metric)
            cells.append("" if g is None else
                         f"{_pct(g['gap'])} ({_pct(g['lo'])} to {_pct(g['hi'])}); within 10%: {verdict(g)}")
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(runs: Mapping[str, dict], *, width: int = 720, height: int = 300) -> Image.Image:
    """Grouped bars of each task's headline metric per run (0..1), a legend on top."""
    names = list(runs)
    tasks = [t for t in TASKS if any(isinstance(r["tasks"].get(t, {}).get(HEADLINE[t]), float) for r in
                                     runs.values())]
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, top, bottom = 40, 40, height - 40
    for k, name in enumerate(names):  # legend
        x = left + k * 150
        d.rectangle([x, 10, x + 12, 22], fill=PALETTE[k % len(PALETTE)])
        d.text((x + 16, 10), name[:20], fill="black")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top)
        d.line([left, y, width - 10, y], fill=(220, 220, 220))
        d.text((5, y - 6), f"{frac:.2f}", fill="black")
    if not tasks:
        return img
    group = (width - left - 10) / len(tasks)
    bar = max(2.0, (group - 10) / max(len(names), 1))
    for i, task in enumerate(tasks):
        x0 = left + i * group + 5
        for k, r in enumerate(runs.values()):
            v = r["tasks"].get(task, {}).get(HEADLINE[task])
            if not isinstance(v, float) or math.isnan(v):
                continue
            y = bottom - max(0.0, min(v, 1.0)) * (bottom - top)
            d.rectangle([x0 + k * bar, y, x0 + (k + 1) * bar - 1, bottom], fill=PALETTE[k % len(PALETTE)])
        d.text((x0, bottom + 4), task[:12], fill="black")
        d.text((x0, bottom + 18), HEADLINE[task][:12], fill=(100, 100, 100))
    return img


def _clean(x):
    """JSON-ready: NaN becomes null (JSON has no NaN), dict keys strings."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_report(runs: Mapping[str, dict], out: str | os.PathLike, *, title: str = "Evaluation",
                 gaps: Mapping[str, Mapping] | None = None) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and ``results.png`` into ``out``, and ``examples_<run>.png`` for
    every run that kept examples (`evaluate(..., examples=k)`); returns their paths. ``gaps``: the first run
    against others (`gap_table`), a second table and ``"gaps"`` in the JSON."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "json": out / "results.json", "figure": out / "results.png"}
    meta = "; ".join(f"{name}: {r['meta'].get('n')} samples of {r['meta'].get('data')}" for name, r in runs.items())
    text = f"# {title}\n\n{meta}\n\n{markdown_table(runs)}"
    first = next(iter(runs), "")
    if gaps:
        rounds = runs[first]["meta"].get("bootstrap") or "?"
        text += (f"\n## {first} against the others\n\nRelative gap, positive when {first} is better, and its 95% "
                 f"paired-bootstrap interval over the test scenes ({rounds} rounds).\n\n{gap_table(first, gaps)}")
    paths["markdown"].write_text(text)
    numbers = {name: {k: v for k, v in r.items() if k not in ("examples", "rescore")} for name, r in runs.items()}
    paths["json"].write_text(json.dumps(_clean({**numbers, **({"gaps": gaps} if gaps else {})}), indent=1) + "\n")
    bar_chart(runs).save(paths["figure"])
    for name, r in runs.items():
        grid = example_grid(r)
        if grid is not None:
            paths[f"examples {name}"] = out / f"examples_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
            grid.save(paths[f"examples {name}"])
    return paths
