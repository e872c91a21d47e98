"""The metric of a new output modality learned in transfer: SAM edges (segment boundaries) predicted from RGB.

    python -m polymodal.eval.transfer curve runs/transfer/full --tokenizer TOK_DIR ... --data data/world64_val \
        --n 100 --out runs/transfer/full/curve.json       # every checkpoint of the run, one row each
    python -m polymodal.eval.transfer plot runs/transfer/*/curve.json --out docs/transfer_curves.png

The world renders ``sam_edge`` exactly (`polymodal.data.world.sample`: a pixel is 255 where two instances or
stuff segments meet, else 0), so the truth is exact. A model predicts the target tokens from the RGB tokens in one
step, greedily (as `eval.pipeline_adapter` decodes every perception target), and the target's tokenizer decodes
them to a map in 0..1. Scores over the test set (pooled, as `tokenizers.metrics` scores edges): ``edge_f1``,
``edge_precision``, ``edge_recall`` (a pixel over 0.5 is an edge; an edge within 1 pixel of a true one is right)
and ``psnr``. The tokenizer ceiling (decode(encode(truth))) bounds what any model over these tokens scores.

Checkpoints are read as models (`model.checkpoint`: a run's ``checkpoints/step_*`` folders load with
`FourM.from_pretrained`), so a curve needs no bundle per step; keep them with ``train.keep_last``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..tokenizers.metrics import metric_sums, summarize_metrics

KEY = "sam_edge"


def edge_scores(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> dict[str, float]:
    """Edge maps (H, W) or (1, H, W): predictions in 0..1, truth uint8 0/255 or 0..1 -> pooled scores."""
    p = torch.as_tensor(np.stack([np.asarray(x, dtype=np.float32).reshape(np.shape(x)[-2:]) for x in pred]))
    t = torch.as_tensor(np.stack([np.asarray(x).reshape(np.shape(x)[-2:]) for x in truth])).float()
    if t.max() > 1.5:
        t = t / 255.0
    return summarize_metrics("edge", metric_sums("edge", p, t))


def load_samples(path: str | Path, n: int, key: str = KEY, *, extra: Sequence[str] = ()) -> list[dict]:
    """The first ``n`` scenes of a world dataset folder with their ``rgb``, ``key`` and ``extra`` keys."""
    from ..data.world.store import iter_samples

    out = []
    for s in iter_samples(path, modalities=list(dict.fromkeys(["rgb", key, *extra]))):
        out.append(s)
        if len(out) == n:
            break
    return out


def load_tokenizers(dirs: Sequence[str | Path]) -> dict:
    """Tokenizer folders -> {modality name (or "text"): tokenizer}, registering their modalities."""
    from .. import modalities
    from ..tokenizers.base import load_tokenizer
    from ..tokenizers.text import TextTokenizer

    toks = {}
    for d in dirs:
        tok = load_tokenizer(d)
        if isinstance(tok, TextTokenizer):
            toks["text"] = tok
            continue
        if not modalities.is_registered(tok.cfg.name):
            modalities.register(tok.modality)
        toks[tok.cfg.name] = tok
    return toks


def model_scores(model_dir: str | Path, tokenizers: dict, samples: Sequence[dict], *, key: str = KEY,
                 batch: int = 50) -> dict[str, float]:
    """Scores of the model folder (release, checkpoint) predicting ``key`` from RGB on ``samples``."""
    from ..model.fourm import FourM
    from ..pipeline import Pipeline
    from .pipeline_adapter import pipeline_predictor

    predict = pipeline_predictor(Pipeline(FourM.from_pretrained(model_dir), tokenizers))
    preds = []
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            preds += predict({"rgb": [s["rgb"] for s in samples[i:i + batch]]}, [key])[key]
    return edge_scores(preds, [s[key] for s in samples])


def given_scores(model_dir: str | Path, tokenizers: dict, samples: Sequence[dict], *, task: str = "semseg",
                 given: Sequence[str] = ("rgb", KEY), batch: int = 50, rescore: list | None = None
                 ) -> dict[str, float]:
    """`eval.tasks` scores of ``task`` (its targets) predicted from the ``given`` world keys (an input modality
    the task does not name, e.g. SAM edges beside RGB for segmentation). ``rescore``: a list that receives the
    `eval.bootstrap` rescorer of these predictions (scores of a subset of the scenes)."""
    from ..model.fourm import FourM
    from ..pipeline import Pipeline
    from .pipeline_adapter import pipeline_predictor
    from .tasks import TASKS, score

    predict = pipeline_predictor(Pipeline(FourM.from_pretrained(model_dir), tokenizers))
    targets = TASKS[task].targets
    preds: dict[str, list] = {t: [] for t in targets}
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            out = predict({k: [s[k] for s in samples[i:i + batch]] for k in given}, targets)
            for t in targets:
                preds[t] += out[t]
    if rescore is not None:
        rescore.append(lambda idx: {k: v for k, v in score(task, {t: [preds[t][i] for i in idx] for t in targets},
                                                           [samples[i] for i in idx]).items()
                                    if not isinstance(v, dict)})
    return {k: v for k, v in score(task, preds, samples).items() if not isinstance(v, dict)}


def ceiling_scores(tokenizers: dict, samples: Sequence[dict], *, key: str = KEY) -> dict[str, float]:
    """decode(encode(truth)) through the tokenizer of ``key``: the best a token model scores."""
    from .predictors import roundtrip

    tok = next(t for n, t in tokenizers.items() if n.startswith(f"tok_{key}@"))
    return edge_scores(roundtrip("edge", [s[key] for s in samples], tok, res=samples[0]["rgb"].shape[0]),
                       [s[key] for s in samples])


def checkpoint_steps(run_dir: str | Path) -> list[tuple[int, Path]]:
    pat = re.compile(r"^step_(\d{8})$")
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob("step_*")
             if (m := pat.match(p.name)) and (p / "model.safetensors").is_file()]
    return sorted(found)


def curve(run_dir: str | Path, tokenizers: dict, samples: Sequence[dict], out: str | Path, *, key: str = KEY,
          start: str | Path | None = None) -> list[dict]:
    """One row per checkpoint of ``run_dir`` (``start``: a step-0 model folder), appended to ``out`` (JSON);
    steps already in ``out`` are not evaluated again, so a rerun after more training only adds the new ones."""
    out = Path(out)
    rows = json.loads(out.read_text()) if out.is_file() else []
    done = {r["step"] for r in rows}
    todo = ([(0, Path(start))] if start is not None else []) + checkpoint_steps(run_dir)
    for step, path in todo:
        if step in done:
            continue
        t0 = time.time()
        rows.append({"step": step, **model_scores(path, tokenizers, samples, key=key),
                     "seconds": round(time.time() - t0, 1)})
        rows.sort(key=lambda r: r["step"])
        out.write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows[-1] if rows[-1]["step"] == step else {"step": step}), flush=True)
    return rows


def plot(files: Sequence[str | Path], out: str | Path, *, metric: str = "edge_f1", ceiling: float | None = None,
         title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for f in files:
        rows = json.loads(Path(f).read_text())
        name = Path(f).parent.name
        ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
        log = Path(f).parent / "metrics.jsonl"  # the run's training loss beside it, where the run logged one
        loss = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        loss = [r for r in loss if f"train/loss_tok_{KEY}@64" in r]
        ax2.plot([r["step"] for r in loss], [r[f"train/loss_tok_{KEY}@64"] for r in loss], label=name)
    if ceiling is not None:
        ax.axhline(ceiling, color="gray", ls="--", label="tokenizer ceiling")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} (held-out)")
    ax.set_title(title)
    ax2.set_xlabel("training step")
    ax2.set_ylabel(f"training loss, tok_{KEY}@64")
    ax.set_ylim(bottom=-0.02)
    ax.legend(loc="center right", fontsize=8)
    ax2.legend(fontsize=8)
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m polymodal.eval.transfer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curve")
    c.add_argument("run_dir")
    c.add_argument("--tokenizer", nargs="+", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--n", type=int, default=100)
    c.add_argument("--out", required=True)
    c.add_argument("--start", help="a step-0 model folder (the starting weights)")
    c.add_argument("--ceiling", help="also write the tokenizer ceiling to this JSON file")
    g = sub.add_parser("given", help="a task's scores with extra given inputs (a new input modality)")
    g.add_argument("model", nargs="+", help="model folders (NAME=DIR)")
    g.add_argument("--tokenizer", nargs="+", required=True)
    g.add_argument("--data", required=True)
    g.add_argument("--n", type=int, default=100)
    g.add_argument("--task", default="semseg")
    g.add_argument("--given", default=f"rgb,{KEY}", help="world keys given to models whose name ends in 'with'")
    g.add_argument("--bootstrap", type=int, default=200, help="resamplings of the scenes for 95%% intervals")
    g.add_argument("--out", required=True)
    p = sub.add_parser("plot")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--metric", default="edge_f1")
    p.add_argument("--ceiling", help="a JSON file written by curve --ceiling")
    p.add_argument("--title", default="")
    a = ap.parse_args(argv)
    if a.cmd == "plot":
        ceil = json.loads(Path(a.ceiling).read_text())[a.metric] if a.ceiling else None
        plot(a.files, a.out, metric=a.metric, ceiling=ceil, title=a.title)
        return
    toks = load_tokenizers(a.tokenizer)
    if a.cmd == "given":
        from .tasks import TASKS

        samples = load_samples(a.data, a.n, extra=TASKS[a.task].targets)
        from .bootstrap import intervals, paired_gaps

        rows, rescorers = {}, {}
        for item in a.model:
            name, path = item.split("=", 1)
            given = a.given.split(",") if name.endswith("with") else ["rgb"]
            keep: list = []
            rows[name] = given_scores(path, toks, samples, task=a.task, given=given, rescore=keep)
            rescorers[name] = keep[0]
            rows[name]["ci95"] = intervals(keep[0], len(samples), rounds=a.bootstrap)
            print(name, json.dumps(rows[name]), flush=True)
        names = list(rows)
        rows["gaps"] = {f"{x} vs {y}": paired_gaps(rescorers[x], rescorers[y], len(samples), rounds=a.bootstrap)
                        for i, x in enumerate(names) for y in names[i + 1:]}
        print(json.dumps(rows["gaps"]), flush=True)
        Path(a.out).write_text(json.dumps(rows, indent=1))
        return
    samples = load_samples(a.data, a.n)
    if a.ceiling:
        Path(a.ceiling).write_text(json.dumps(ceiling_scores(toks, samples), indent=1))
    curve(a.run_dir, toks, samples, a.out, start=a.start)


if __name__ == "__main__":
    main()
