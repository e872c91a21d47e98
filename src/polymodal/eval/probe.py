"""Linear probes on frozen features: what a 4M encoder knows about a world scene, against a random encoder and pixels.

    polymodal probe --model weights/default --train 2000 --test 500 --out runs/probe

Two tasks, labelled from each scene's description and its renderer's instance map (an object counts when at least
one of its pixels is visible; ~2% are hidden behind others or outside the frame):

- ``classes``: which of the world's object classes (`OBJECT_CLASSES`) are in view, multi-label: one logistic
  output per class (binary cross-entropy); scored by mean average precision over the classes (``mAP``) and macro F1
  at probability 0.5 (``F1``).
- ``count``: how many objects are in view, 0 to `MAX_OBJECTS`, as classification (softmax cross-entropy); scored by
  accuracy (``acc``) and the mean absolute error of the predicted count (``MAE``).

The probe is logistic regression (`fit_linear`: full-batch L-BFGS in torch on standardized features) with an L2
penalty chosen from `DECAYS` on a validation split (the last `VAL_FRACTION` of the train scenes), then refit on all
train scenes. Train scenes are world seed 0 (the training world), test scenes world seed 1 (held out, the scenes
``polymodal eval`` scores), both rendered here at ``res`` px. Rows: the model's encoder (`Pipeline.embed` of the
image: the mean of its tokens, and the means of the four quadrants of its token grid, which keep where things are),
the same config with random weights (same tokenizers), raw pixels (RGB box-downsampled to `PIXEL_SIDE` px,
flattened) and chance (the label prior: mAP = mean class frequency, the majority count).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from ..data.world.scene import MAX_OBJECTS
from .bootstrap import intervals, paired_gaps

DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # L2 penalty (times 1/2 ||W||^2) on the mean loss
VAL_FRACTION = 0.2
PIXEL_SIDE = 16
TRAIN_SEED, TEST_SEED = 0, 1


# ------------------------------------------------------------------------------------------------- metrics


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class average precision of scores (n, C) for 0/1 labels (n, C): the mean, over a class's positives, of
    the precision among the samples ranked at or above each (NaN for a class without positives)."""
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        y = labels[np.argsort(-scores[:, c], kind="stable"), c] > 0
        if y.any():
            hits = np.cumsum(y)
            out[c] = float(np.mean(hits[y] / (np.flatnonzero(y) + 1)))
    return out


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of F1 = 2 tp / (2 tp + fp + fn) for 0/1 arrays (n, C); a class never present nor
    predicted counts as 1 (nothing to find, nothing wrongly found)."""
    p, y = predicted > 0, labels > 0
    tp, fp, fn = (p & y).sum(0), (p & ~y).sum(0), (~p & y).sum(0)
    denom = 2 * tp + fp + fn
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)))


# --------------------------------------------------------------------------------------------------- probe


class Linear(NamedTuple):
    """A fitted probe on standardized features: logits = ((x - mean) / std) @ weight + bias."""

    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean) / self.std) @ self.weight + self.bias


def fit_linear(x: torch.Tensor, y: torch.Tensor, *, multilabel: bool, decay: float, steps: int = 300,
               num_classes: int | None = None) -> Linear:
    """Logistic regression of x (n, D) on y: 0/1 (n, K) with ``multilabel`` (one sigmoid per column), else class
    ids (n,) (softmax over ``num_classes``, default y.max() + 1). Loss: mean cross-entropy + decay / 2 * ||W||^2,
    minimized by full-batch L-BFGS (float64: the tiny penalties of the sweep stay resolvable)."""
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)  # standardized, so one penalty fits every feature scale
    z = (x - mean) / std
    k = y.shape[1] if multilabel else (num_classes or int(y.max()) + 1)
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    target = y.double() if multilabel else y.long()
    loss_fn = F.binary_cross_entropy_with_logits if multilabel else F.cross_entropy
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(z @ w + b, target) + 0.5 * decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Linear(w.detach(), b.detach(), mean, std)


def scores(probe: Linear, x: torch.Tensor, y: torch.Tensor, *, multilabel: bool) -> dict[str, float]:
    """``{"mAP", "F1"}`` (multi-label) or ``{"acc", "MAE"}`` (class ids, MAE in classes) of the probe on (x, y)."""
    with torch.no_grad():
        return score_logits(probe.logits(x), y, multilabel=multilabel)


def score_logits(logits: torch.Tensor, y: torch.Tensor, *, multilabel: bool) -> dict[str, float]:
    """`scores` of given logits (n, K) against y (n, K) 0/1 or (n,) class ids."""
    if multilabel:
        s, t = logits.numpy(), y.numpy()
        return {"mAP": float(np.nanmean(average_precision(s, t))), "F1": macro_f1(s > 0, t)}
    pred = logits.argmax(1)
    return {"acc": float((pred == y).double().mean()), "MAE": float((pred - y).abs().double().mean())}


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
          multilabel: bool, decays=DECAYS, val_fraction: float = VAL_FRACTION, steps: int = 300,
          num_classes: int | None = None) -> dict:
    """Choose the penalty on the last ``val_fraction`` of the train rows (by mAP or accuracy), refit on every
    train row, score on the test rows: ``{"test": scores, "decay": chosen, "val": {decay: its score},
    "test_logits": (n_test, K)}`` (the logits let a bootstrap rescore subsets of the test rows)."""
    n_val = max(1, round(len(train_x) * val_fraction))
    fit_x, fit_y, val_x, val_y = train_x[:-n_val], train_y[:-n_val], train_x[-n_val:], train_y[-n_val:]
    key = "mAP" if multilabel else "acc"
    fit = dict(multilabel=multilabel, steps=steps, num_classes=num_classes)
    val = {d: scores(fit_linear(fit_x, fit_y, decay=d, **fit), val_x, val_y, multilabel=multilabel)[key]
           for d in decays}
    best = max(decays, key=lambda d: (val[d], d))  # ties: the stronger penalty
    final = fit_linear(train_x, train_y, decay=best, **fit)
    with torch.no_grad():
        logits = final.logits(test_x)
    return {"test": score_logits(logits, test_y, multilabel=multilabel), "decay": best, "val": val,
            "test_logits": logits}


# ----------------------------------------------------------------------------------------------- the world


class Scenes(NamedTuple):
    """World scenes for probing: images and what is in view."""

    rgb: np.ndarray  # (n, res, res, 3) uint8
    classes: torch.Tensor  # (n, C) float 0/1: each of OBJECT_CLASSES in view
    counts: torch.Tensor  # (n,) int64: objects in view


def world_scenes(n: int, *, seed: int, res: int = 64, progress: str | None = None) -> Scenes:
    """Scenes 0..n-1 of world ``seed`` (the RGB of `render_sample`, without rendering the other modalities)."""
    from ..data.world import OBJECT_CLASSES, sample_scene
    from ..data.world.render import render
    from ..data.world.sample import check_resolution

    res = check_resolution(res)
    rgb = np.empty((n, res, res, 3), np.uint8)
    classes, counts = torch.zeros(n, len(OBJECT_CLASSES)), torch.zeros(n, dtype=torch.long)
    for i in _bar(range(n), progress, "scene"):
        scene = sample_scene(seed, i)
        frame = render(scene, res)
        seen = np.unique(frame.instance)
        seen = seen[seen > 0] - 1  # instance ids are object index + 1
        rgb[i] = frame.rgb
        for k in seen:
            classes[i, OBJECT_CLASSES.index(scene.objects[k].cls)] = 1
        counts[i] = len(seen)
    return Scenes(rgb, classes, counts)


def pixel_features(rgb: np.ndarray, side: int = PIXEL_SIDE) -> torch.Tensor:
    """(n, 3 * side * side): images (n, H, W, 3) uint8 box-averaged to side x side, in 0..1, flattened."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    return F.adaptive_avg_pool2d(x, side).flatten(1)


def encoder_features(pipe, rgb: np.ndarray, *, batch_size: int = 64,
                     progress: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's features of each image (`Pipeline.embed` of its RGB input): the mean of its tokens (n, D),
    and the means over the 2 x 2 quadrants of the token grid (n, 4 * D; `region_means`), which keep where."""
    name, pooled, regions, notices = pipe.resolve("rgb"), [], [], set()
    grid = pipe.model.config.modality(name).grid
    for a in _bar(range(0, len(rgb), batch_size), progress, "batch"):
        feats = pipe.embed({name: list(rgb[a:a + batch_size])}, notify=notices.add)
        pooled.append(feats.pooled.float().cpu())
        regions.append(region_means(feats.tokens, feats.positions, feats.valid, grid).float().cpu())
    return torch.cat(pooled), torch.cat(regions)


def region_means(tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int], *,
                 cells: int = 2) -> torch.Tensor:
    """(B, cells * cells * D): the mean of the valid tokens (B, N, D) in each of cells x cells equal regions of a
    token grid (rows, cols), regions row-major; ``positions`` (B, N) are row-major grid positions."""
    rows, cols = grid
    region = (positions // cols * cells // rows) * cells + positions % cols * cells // cols
    weights = F.one_hot(region, cells * cells).to(tokens.dtype) * valid[..., None]  # (B, N, R)
    sums = weights.transpose(1, 2) @ tokens  # (B, R, D)
    return (sums / weights.sum(1)[..., None].clamp(min=1)).flatten(1)


def _bar(items, title: str | None, unit: str):
    if title is None:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=title, unit=unit, dynamic_ncols=True, leave=False)


def run_probe(model: str | None = None, *, train: int = 2000, test: int = 500, res: int = 64, batch_size: int = 64,
              seed: int = 0, bootstrap: int = 0, progress: bool = False) -> dict:
    """Probe the model's encoder, a randomly initialized one of its config, raw pixels and chance (module doc);
    returns the table's rows, the setup and the seconds each phase took. ``bootstrap`` > 0: each row's 95%
    intervals over ``bootstrap`` resamplings of the test scenes (``ci95``), and ``gaps``: the first row's paired
    relative gap in mAP and count accuracy to every other probed row (`bootstrap.paired_gaps`)."""
    from ..model.fourm import FourM
    from ..pipeline import Pipeline
    from ..pipeline.demo import default_model
    from .command import _load

    if train < 10 or test < 1:
        raise ValueError(f"need at least 10 train scenes and 1 test scene, got --train {train} --test {test}")
    if bootstrap < 0:
        raise ValueError(f"--bootstrap takes a number of rounds >= 0, got {bootstrap}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:  # numpy's generator refuses it only after the fits, in words that name no option
        raise ValueError(f"--seed must be at least 0, got {seed}")
    path = str(default_model(model))
    pipe = _load(path)
    torch.manual_seed(seed)
    random_pipe = Pipeline(FourM(pipe.model.config), pipe.tokenizers, pixels=pipe.pixels)
    seconds: dict[str, float] = {}

    def timed(what: str, fn, *args, **kw):
        start = time.perf_counter()
        result = fn(*args, **kw)
        seconds[what] = seconds.get(what, 0.0) + time.perf_counter() - start
        return result

    bar = (lambda title: title) if progress else (lambda title: None)  # a bar's title, or no bar
    tr = timed("render", world_scenes, train, seed=TRAIN_SEED, res=res, progress=bar("render train"))
    te = timed("render", world_scenes, test, seed=TEST_SEED, res=res, progress=bar("render test"))
    name = Path(path).name or path
    feature_sets = {}
    for title, p in ((f"4M encoder ({name})", pipe), ("4M encoder, random init", random_pipe)):
        (ptr, rtr), (pte, rte) = (timed(f"embed: {title}", encoder_features, p, s.rgb, batch_size=batch_size,
                                        progress=bar(title)) for s in (tr, te))
        feature_sets[f"{title}: mean of tokens"] = (ptr, pte)
        feature_sets[f"{title}: 2x2 region means"] = (rtr, rte)
    feature_sets[f"pixels {PIXEL_SIDE}x{PIXEL_SIDE} RGB"] = (pixel_features(tr.rgb), pixel_features(te.rgb))
    rows, rescore = {}, {}
    for title, (ftr, fte) in feature_sets.items():
        classes = timed("fit", probe, ftr, tr.classes, fte, te.classes, multilabel=True)
        count = timed("fit", probe, ftr, tr.counts, fte, te.counts, multilabel=False, num_classes=MAX_OBJECTS + 1)
        rescore[title] = _rescorer(classes.pop("test_logits"), count.pop("test_logits"), te)
        rows[title] = {"dim": int(ftr.shape[1]), "classes": classes, "count": count}
    gaps = {}
    if bootstrap:
        for title, row in rows.items():
            row["ci95"] = intervals(rescore[title], test, rounds=bootstrap, seed=seed)
        first, *others = rows
        higher = lambda f: lambda idx: {m: v for m, v in f(idx).items() if m in ("mAP", "acc")}  # noqa: E731
        gaps = {o: paired_gaps(higher(rescore[first]), higher(rescore[o]), test, rounds=bootstrap, seed=seed)
                for o in others}
    rows["chance (label prior)"] = chance(tr, te)
    setup = {"model": path, "train": f"world seed {TRAIN_SEED}, scenes 0..{train - 1}",
             "test": f"world seed {TEST_SEED}, scenes 0..{test - 1}", "res": res, "decays": list(DECAYS),
             "val_fraction": VAL_FRACTION, "bootstrap": bootstrap, "threads": torch.get_num_threads()}
    return {"rows": rows, "gaps": gaps, "setup": setup, "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def _rescorer(class_logits: torch.Tensor, count_logits: torch.Tensor, test: Scenes):
    """Test indices -> both tasks' scores on those scenes (for `bootstrap.intervals` and `paired_gaps`)."""
    def rescore(idx: np.ndarray) -> dict[str, float]:
        i = torch.as_tensor(idx)
        return {**score_logits(class_logits[i], test.classes[i], multilabel=True),
                **score_logits(count_logits[i], test.counts[i], multilabel=False)}

    return rescore



def chance(train: Scenes, test: Scenes) -> dict:
    """The label prior's scores: every class scored by its train frequency (AP = the class's test frequency, in
    expectation over ties), F1 of marking the classes present in most train scenes, the most frequent count."""
    prior = train.classes.mean(0)
    majority = int(torch.bincount(train.counts).argmax())
    return {"dim": 0,
            "classes": {"test": {"mAP": float(test.classes.mean(0)[test.classes.sum(0) > 0].mean()),
                                 "F1": macro_f1((prior > 0.5).expand_as(test.classes).numpy(), test.classes.numpy())}},
            "count": {"test": {"acc": float((test.counts == majority).double().mean()),
                               "MAE": float((test.counts - majority).abs().double().mean())}}}


def markdown(results: dict) -> str:
    """The probe table (test scores, with 95% intervals after a bootstrap; the L2 penalties chosen on validation)
    and, after a bootstrap, the first row's paired relative gaps to the others."""
    lines = ["| features | dim | classes mAP | classes F1 | count acc | count MAE | L2 (classes, count) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for title, r in results["rows"].items():
        got, ci = r["classes"]["test"] | r["count"]["test"], r.get("ci95", {})
        cells = [_num(got[m], f) + (f" ({_num(ci[m][0], f)}–{_num(ci[m][1], f)})" if m in ci else "")
                 for m, f in (("mAP", ".3f"), ("F1", ".3f"), ("acc", ".3f"), ("MAE", ".2f"))]
        decays = f"{r['classes']['decay']:g}, {r['count']['decay']:g}" if "decay" in r["classes"] else "-"
        lines.append(f"| {title} | {r['dim'] or '-'} | {' | '.join(cells)} | {decays} |")
    if results.get("gaps"):
        first = next(iter(results["rows"]))
        lines += ["", f"| {first}, relative to | mAP gap (95%) | count acc gap (95%) |", "|---|---:|---:|"]
        for other, g in results["gaps"].items():
            cells = ["–" if math.isnan(g[m]["gap"]) else  # no gap to a score of 0 (`bootstrap.relative_gap`)
                     f"{g[m]['gap']:+.1%} ({_num(g[m]['lo'], '+.1%')} to {_num(g[m]['hi'], '+.1%')})"
                     for m in ("mAP", "acc")]
            lines.append(f"| {other} | {cells[0]} | {cells[1]} |")
    s = results["setup"]
    took = ", ".join(f"{k} {v}" for k, v in results["seconds"].items())
    lines.append(f"\ntrain: {s['train']} ({s['val_fraction']:.0%} of them validate the L2 penalty); test: "
                 f"{s['test']}; {s['res']} px. Seconds: {took}")
    return "\n".join(lines) + "\n"


def _num(x: float, fmt: str) -> str:
    return "–" if math.isnan(x) else f"{x:{fmt}}"  # as the eval report shows a score that has no value


def write(results: dict, out: str | Path) -> tuple[Path, Path]:
    from .report import _clean

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "probe.md", out / "probe.json"
    md.write_text(markdown(results))
    js.write_text(json.dumps(_clean(results), indent=1) + "\n")  # NaN as null: JSON has no NaN
    return md, js


def add_parser(sub) -> None:
    """The ``probe`` subcommand on an argparse subparsers object (called by `polymodal.cli`)."""
    p = sub.add_parser("probe", help="linear probes on frozen encoder features of world scenes (object classes in "
                                     "view, object count) against a random encoder and raw pixels")
    p.add_argument("--model", help="a pipeline bundle or model folder (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.add_argument("--train", type=int, default=2000, help="train scenes, world seed 0 (2000)")
    p.add_argument("--test", type=int, default=500, help="test scenes, world seed 1 (500)")
    p.add_argument("--res", type=int, default=64, help="resolution the scenes are rendered at (64)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init encoder and the bootstrap (0)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS",
                   help="95%% intervals from ROUNDS resamplings of the test scenes, and the model's paired gaps to "
                        "the other rows (e.g. 500; 0: none)")
    p.add_argument("--out", default="runs/probe", help="folder for probe.md and probe.json (runs/probe)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .command import out_is_file

    out_is_file(args.out, "probe")  # before minutes of fitting
    torch.set_num_threads(max(1, args.threads))
    try:
        results = run_probe(args.model, train=args.train, test=args.test, res=args.res, batch_size=args.batch_size,
                            seed=args.seed, bootstrap=args.bootstrap, progress=not args.quiet)
    except (ValueError, OSError) as e:  # no default model, an unreadable bundle, a bad count or resolution
        print(f"polymodal probe: {e}", file=sys.stderr)
        return 2
    md, js = write(results, args.out)
    print(md.read_text(), end="")
    print(f"wrote {md}, {js}")
    return 0
