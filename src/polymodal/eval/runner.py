"""`evaluate`: every task of `tasks.TASKS` on a held-out world test set, for any predictor.

    from polymodal.eval import evaluate, world_test_set, write_report
    samples = world_test_set(n=200, seed=1)                       # world seed 1: never seen in training (seed 0)
    results = evaluate(predict, samples, tasks=["depth", "det", "caption2rgb"])
    write_report({"4M": results}, "runs/eval")                    # results.md, results.json, results.png

``predict`` is the protocol of `predictors` (world keys and values, batched as lists); a `Pipeline` is wrapped by
`pipeline_predictor`. The test set is rendered from ``(seed, index)`` alone, so two runs with the same seed and n
score the same scenes. A task whose data is missing (retrieval without ``minilm_global`` vectors: render the set
with ``text_embeddings=True`` or read a world folder synthesized with ``--text-embeddings``) is reported as
skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from .bootstrap import Rescore, intervals
from .metrics import SUM_METRICS, image_sums, pooled
from .predictors import Predict
from .tasks import DEFAULT_TASKS, TASKS, generation_scores, retrieval_scores, score

TEST_SEED = 1  # training worlds use seed 0 (`polymodal data synth` default); 1 is held out


def world_test_set(n: int = 200, *, seed: int = TEST_SEED, res: int = 64, text_embeddings: bool = False,
                   encoder=None) -> list[dict]:
    """Samples 0..n-1 of world ``seed`` at ``res`` px (every modality of `render_sample`, plus ``minilm_global``
    (384,) when ``text_embeddings``: the optional sentence encoder of ``polymodal[text]``, or ``encoder``)."""
    from ..data.world import render_sample

    samples = [render_sample(seed, i, res) for i in range(n)]
    if text_embeddings:
        if encoder is None:
            from ..data.world import SentenceEncoder

            encoder = SentenceEncoder()
        vectors = encoder.global_embedding([s["caption"] for s in samples])
        for s, v in zip(samples, vectors):
            s["minilm_global"] = np.asarray(v, np.float32)
    return samples


def read_test_set(path: str | os.PathLike, n: int | None = None) -> list[dict]:
    """The first ``n`` samples (all when None) of a world dataset folder (`polymodal data synth`)."""
    from ..data.world import iter_samples

    return list(islice(iter_samples(path), n))


def _bar(title: str, total: int):
    """A tqdm bar on stderr over ``total`` scenes (as `polymodal data synth` shows its scenes)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="scene", desc=title, dynamic_ncols=True)


def _batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _missing(task: str, samples: Sequence[Mapping[str, Any]]) -> str | None:
    t = TASKS[task]
    keys = [k for k in (*t.inputs, *t.targets, *t.needs) if not t.generation or k != "rgb"]
    absent = sorted({k for k in keys for s in samples if k not in s})
    if absent:
        hint = " (render the test set with text embeddings)" if "minilm_global" in absent else ""
        return f"the test set lacks {', '.join(absent)}{hint}"
    return None


def _check(out: Mapping[str, list], targets: Sequence[str], n: int, task: str) -> None:
    for t in targets:
        if t not in out or len(out[t]) != n:
            got = len(out[t]) if t in out else "no"
            raise ValueError(f"task {task}: the predictor returned {got} values of {t!r} for {n} samples")


def run_task(predict: Predict, task: str, samples: Sequence[Mapping[str, Any]], *, batch_size: int = 16,
             examples: int = 0, done: Callable[[int], None] | None = None) -> tuple[dict, list[dict], Rescore]:
    """(scores, kept examples, rescorer) of one task (see `tasks`) of ``predict`` on ``samples``; the first
    ``examples`` samples' values are kept for pictures (`examples`); the rescorer scores the same predictions on
    a subset of the samples (`bootstrap`). ``done(k)`` is called after each batch of ``k`` samples (a progress
    bar)."""
    t = TASKS[task]
    preds: dict[str, list] = {k: [] for k in t.targets}
    read: dict[str, list] = {"det": [], "semseg": []}
    for batch in _batches(samples, batch_size):
        out = predict({k: [s[k] for s in batch] for k in t.inputs}, list(t.targets))
        _check(out, t.targets, len(batch), task)
        for k in t.targets:
            preds[k] += list(out[k])
        if t.generation:  # read the generated images back with the same predictor
            back = predict({"rgb": list(out["rgb"])}, ["det", "semseg"])
            _check(back, ("det", "semseg"), len(batch), task)
            read["det"] += list(back["det"])
            read["semseg"] += list(back["semseg"])
        if done is not None:
            done(len(batch))
    (ik,), (ok,) = t.inputs, t.targets
    kept = [{"input": (ik, s[ik]), "output": (ok, preds[ok][i]), "truth": (ok, s[ok]), "res": s["rgb"].shape[0],
             "rgb": s["rgb"], **({"read": {"det": read["det"][i], "semseg": read["semseg"][i]}} if t.generation
                                 else {})}
            for i, s in enumerate(samples[:examples]) if ok != "minilm_global"]
    rescore = _rescorer(task, preds, read, samples)
    return rescore(np.arange(len(samples))), kept, rescore


def _rescorer(task: str, preds: Mapping[str, list], read: Mapping[str, list], samples: Sequence[Mapping[str, Any]]
              ) -> Rescore:
    """The scores of the predictions ``preds`` (generated images read back: ``read``) of the samples at given
    indices; retrieval keeps the whole test set as its gallery (only the queries are drawn)."""
    if task in SUM_METRICS:  # pixel-pooled: per-image sums once, then any subset is a sum (`metrics.image_sums`)
        key = TASKS[task].targets[0]
        sums = image_sums(task, np.stack(preds[key]), np.stack([s[key] for s in samples]))
        return lambda idx: pooled(task, sums[idx])

    def rescore(idx: np.ndarray) -> dict:
        sub = [samples[i] for i in idx]
        if TASKS[task].generation:
            return generation_scores([read["det"][i] for i in idx], [read["semseg"][i] for i in idx],
                                     [s["det"] for s in sub])
        if task == "retrieval":
            return retrieval_scores([preds["minilm_global"][i] for i in idx], [s["minilm_global"] for s in samples],
                                    relevant=idx)
        return score(task, {k: [v[i] for i in idx] for k, v in preds.items()}, sub)
    return rescore


def evaluate(predict: Predict | Any, data: Sequence[Mapping[str, Any]] | str | os.PathLike | None = None, *,
             tasks: Sequence[str] = DEFAULT_TASKS, n: int = 200, seed: int = TEST_SEED, res: int = 64,
             batch_size: int = 16, examples: int = 0, source: str | None = None, bootstrap: int = 0,
             progress: str | None = None) -> dict:
    """Scores of ``predict`` on every task of ``tasks``.

    Args:
        predict: a `Predict` callable, or an object with ``generate`` (a `Pipeline`, wrapped by
            `pipeline_predictor` with greedy decoding and ``seed``).
        data: samples (world dicts), a world dataset folder, or None: `world_test_set` (``n``, ``seed``, ``res``).
        tasks: names from `tasks.TASKS`.
        n: samples to evaluate (the first n of ``data``).
        examples: keep the values of the first ``examples`` samples per task under ``"examples"`` (for
            `examples.example_grid`; the report draws them, the JSON leaves them out).
        source: what the samples are, for the report (default: the folder, the world seed, or "in-memory").
        bootstrap: rounds of the scene bootstrap (`bootstrap.intervals`); > 0 adds ``"ci95": {metric: [lo, hi]}``
            to every scored task (0: none).
        progress: a name: a tqdm bar per task on stderr (scenes, rate, time left), titled ``"<name>: <task>"``;
            None: silent (the default, for library use and tests; ``polymodal eval`` shows them unless --quiet).

    Returns:
        ``{"tasks": {task: {metric: value} or {"skipped": reason}}, "meta": {...}, "rescore": {task: rescorer}}``;
        metrics are floats (mAP's ``ap`` and mIoU's ``iou`` per class are dicts), seconds per task in
        ``meta["seconds"]``; the rescorers (`bootstrap`: the same predictions scored on a subset) stay out of
        reports.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if not callable(predict) or hasattr(predict, "generate"):
        from .pipeline_adapter import pipeline_predictor

        predict = pipeline_predictor(predict, seed=seed)
    if data is None:
        samples, source = world_test_set(n, seed=seed, res=res), f"world seed {seed}, {res} px"
    elif isinstance(data, (str, os.PathLike)):
        samples, source = read_test_set(data, n), str(data)
    else:
        samples, source = list(data)[:n], source or "in-memory samples"
    if not samples:
        raise ValueError(f"no test samples in {source}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap rounds must be >= 0, got {bootstrap}")
    results, seconds, kept, rescorers = {}, {}, {}, {}
    can = getattr(predict, "supports", None)
    for task in tasks:
        reason = _missing(task, samples) or (can(task) if can is not None else None)
        if reason:
            results[task] = {"skipped": reason}
            continue
        start = time.perf_counter()
        bar = _bar(f"{progress}: {task}", len(samples)) if progress is not None else None
        try:
            results[task], kept[task], rescorers[task] = run_task(
                predict, task, samples, batch_size=batch_size, examples=examples,
                done=None if bar is None else bar.update)
            if bootstrap:
                if bar is not None:
                    bar.set_postfix_str(f"bootstrap {bootstrap} rounds")
                results[task]["ci95"] = intervals(rescorers[task], len(samples), rounds=bootstrap, seed=seed)
        finally:
            if bar is not None:
                bar.close()
        seconds[task] = round(time.perf_counter() - start, 3)
    out = {"tasks": results, "meta": {"n": len(samples), "data": source, "seed": seed, "seconds": seconds,
                                      "bootstrap": bootstrap}, "rescore": rescorers}
    if examples:
        out["examples"] = {k: v for k, v in kept.items() if v}
    return out
