"""``polymodal eval``: a model (and optionally specialists and its tokenizers' ceilings) on the held-out world.

    polymodal eval --model weights/default --n 200 --out runs/eval
    polymodal eval --model weights/default --data data/world64_test --tasks depth,det --ceiling \\
        --compare depth=runs/specialist_depth/release --compare det=runs/specialist_det/release --bootstrap 500

Writes ``results.md``, ``results.json``, ``results.png`` and every model's ``examples_<name>.png`` (the first
``--examples`` samples of every task: input, output, truth) to ``--out`` (`report`), with one column per model:
the model, each ``--compare NAME=DIR`` (scored on the tasks it can do, the others shown as skipped), and with
``--ceiling`` the model's tokenizers' decode(encode(ground truth)). Every column scores the same samples.
``--bootstrap N`` adds 95% intervals over the test scenes and a second table: the model's relative gap to each
``--compare`` model with its paired interval (`bootstrap`), which says whether "within 10%" is more than noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .bootstrap import paired_gaps
from .predictors import ceiling_predictor
from .runner import TEST_SEED, evaluate, read_test_set, world_test_set
from .tasks import DEFAULT_TASKS, TASKS

WORLD_KEYS = ("rgb", "depth", "normal", "semseg", "det", "caption", "minilm_global")


def pipeline_tokenizers(pipe) -> dict:
    """World key -> the pipeline's tokenizer of that modality (sequences: its text tokenizer)."""
    out = {}
    for key in WORLD_KEYS:
        try:
            name = pipe.resolve(key, output=True)
        except ValueError:
            continue
        tok = pipe.tokenizers.get(name) or (pipe.tokenizers.get("text") if key in ("det", "caption") else None)
        if tok is not None:
            out[key] = tok
    return out


def run(model: str | None, out: str, *, data: str | None = None, world_seed: int = TEST_SEED, n: int = 200,
        res: int = 64, tasks=DEFAULT_TASKS, ceiling: bool = False, compare: dict[str, str] | None = None,
        batch_size: int = 16, text_embeddings: bool = False, examples: int = 3, steps: int = 1,
        generation_steps: int | None = None, bootstrap: int = 0, progress: bool = False) -> dict[str, Path]:
    """Evaluate ``model`` (a folder `Pipeline.from_pretrained` reads) and write the report; returns its paths.
    ``bootstrap`` > 0: every score's 95% interval, and the model's paired gap to each ``compare`` model.
    ``progress``: a progress bar per model and task on stderr."""
    from ..pipeline.demo import default_model
    from .pipeline_adapter import model_resolution, pipeline_predictor
    from .report import write_report

    absent = [f"{name}={folder}" for name, folder in (compare or {}).items() if not Path(folder).exists()]
    if absent:  # before minutes of scoring the model
        raise FileNotFoundError(f"--compare: no such folder: {', '.join(absent)}")
    model = str(default_model(model))
    name0 = Path(model).name or model
    for name, folder in (compare or {}).items():  # a column of that name would be replaced by the compared model's
        if name == name0 or (ceiling and name == "tokenizer ceiling"):
            whose = "the model's own" if name == name0 else "the --ceiling"
            raise ValueError(f"--compare {name}={folder}: {name} is {whose} column; give the compared model another "
                             "name")
    # Every model is loaded before the test set is rendered and scored: a damaged folder fails in a second.
    pipe = _load(model)
    others = {name: _load(folder) for name, folder in (compare or {}).items()}
    if data is not None:
        samples = read_test_set(data, n)
    else:
        samples = world_test_set(n, seed=world_seed, res=res, text_embeddings=text_embeddings)
    where = data or f"world seed {world_seed}, {res} px"
    side = int(samples[0]["rgb"].shape[0]) if samples else res
    for name, p in {name0: pipe, **others}.items():  # else depth fails on shapes and boxes score in the wrong pixels
        if model_resolution(p) != side:
            raise ValueError(f"{name} reads {model_resolution(p)} px images, the test scenes are {side} px ({where}): "
                             f"score it on scenes of its size (--res {model_resolution(p)}, or --data of a world "
                             f"synthesized with --res {model_resolution(p)})")
    if data is not None and len(samples) < n:  # else the report's title is the only sign
        print(f"notice: {data} holds {len(samples)} samples; scoring those {len(samples)} (--n {n})", file=sys.stderr)
    decoding = dict(seed=world_seed, steps=steps, generation_steps=generation_steps)
    runs = {name0: evaluate(pipeline_predictor(pipe, **decoding), samples, tasks=tasks, batch_size=batch_size,
                            examples=examples, source=where, bootstrap=bootstrap,
                            progress=name0 if progress else None)}
    gaps = {}
    for name, other in others.items():
        runs[name] = evaluate(pipeline_predictor(other, **decoding), samples, tasks=tasks, batch_size=batch_size,
                              examples=examples, source=where, bootstrap=bootstrap,
                              progress=name if progress else None)
        if bootstrap:
            both = [t for t in runs[name]["rescore"] if t in runs[name0]["rescore"]]
            gaps[name] = {t: paired_gaps(runs[name0]["rescore"][t], runs[name]["rescore"][t], len(samples),
                                         rounds=bootstrap, seed=world_seed) for t in both}
    if ceiling:
        perception = [t for t in tasks if not TASKS[t].generation]
        runs["tokenizer ceiling"] = evaluate(ceiling_predictor(samples, pipeline_tokenizers(pipe), res=side),
                                             samples, tasks=perception, batch_size=batch_size, source=where,
                                             progress="ceiling" if progress else None)
    return write_report(runs, out, title=f"Evaluation of {model} on {len(samples)} samples of {where}", gaps=gaps)


def out_is_file(out: str, command: str) -> None:
    """Refuse an --out that names a file (or lies below one), before the run rather than at its end: the
    commands' one check (`pipeline.outputs.check_out`), as ``polymodal COMMAND: ...``."""
    from ..pipeline.outputs import check_out

    try:
        check_out(out, "--out")
    except ValueError as e:
        raise SystemExit(f"polymodal {command}: {e}") from None


def _load(folder: str):
    """``Pipeline.from_pretrained(folder)``; what makes a folder unloadable (a truncated or corrupt file, weights
    that do not fit the config, an unknown modality) becomes a `PipelineError` that names the file."""
    from ..pipeline import Pipeline, PipelineError

    try:
        return Pipeline.from_pretrained(folder)
    except PipelineError:
        raise
    except KeyError as e:  # an unknown modality: its message names the modality, not the folder
        raise PipelineError(f"{folder}: {e.args[0] if e.args else e}") from e
    except ValueError as e:  # CheckpointError, TokenizerLoadError, ConfigError: their text names the file
        raise PipelineError(str(e)) from e


def add_parser(sub) -> None:
    """The ``eval`` subcommand on an argparse subparsers object (called by `polymodal.cli`)."""
    p = sub.add_parser("eval", help="score a model on held-out world scenes: Markdown + JSON table and a figure")
    p.add_argument("--model", help="a pipeline bundle or model folder (Pipeline.from_pretrained; default: the shipped "
                                    "src/polymodal/weights/default)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="a world dataset folder (default: render the held-out world)")
    src.add_argument("--world-seed", type=int, default=TEST_SEED, help="seed of the rendered test world (1)")
    p.add_argument("--n", type=int, default=200, help="test samples (default 200)")
    p.add_argument("--res", type=int, default=64, help="resolution of the rendered test world")
    p.add_argument("--out", default="runs/eval", help="output folder")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma-separated: {','.join(TASKS)}")
    p.add_argument("--ceiling", action="store_true", help="add the tokenizers' ceilings (decode(encode(GT)))")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="another model to score beside it (e.g. a specialist); repeatable")
    p.add_argument("--text-embeddings", action="store_true",
                   help="embed the rendered captions (polymodal[text]) so retrieval can be scored")
    p.add_argument("--examples", type=int, default=3, help="samples per task in the example figure (3)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=1,
                   help="decoding steps of predicted image tokens (1, as 4M-21 decodes RGB -> X; greedy always)")
    p.add_argument("--generation-steps", type=int, default=None,
                   help="MaskGIT steps of generated RGB (default: the pipeline's, 8)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS",
                   help="95%% intervals of every score from ROUNDS resamplings of the test scenes, and the model's "
                        "paired gap to each --compare model (e.g. 500; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..data.world import ShardError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"polymodal eval: unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if not tasks:
        raise SystemExit(f"polymodal eval: --tasks names no task; tasks: {', '.join(TASKS)}")
    for flag, value, least in (("--n", args.n, 1), ("--bootstrap", args.bootstrap, 0),
                               ("--batch-size", args.batch_size, 1), ("--examples", args.examples, 0)):
        if value < least:
            raise SystemExit(f"polymodal eval: {flag} must be at least {least}, got {value}")
    out_is_file(args.out, "eval")  # before minutes of scoring
    bad = [c for c in args.compare if "=" not in c]
    if bad:
        raise SystemExit(f"polymodal eval: --compare takes NAME=DIR, got {bad[0]!r}")
    names = [c.split("=", 1)[0] for c in args.compare]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:  # a dict would keep the last one only
        raise SystemExit(f"polymodal eval: --compare {twice} is given twice; give each compared model its own name")
    start = time.perf_counter()
    try:
        paths = run(args.model, args.out, data=args.data, world_seed=args.world_seed, n=args.n, res=args.res,
                    tasks=tasks, ceiling=args.ceiling, compare=dict(c.split("=", 1) for c in args.compare),
                    batch_size=args.batch_size, text_embeddings=args.text_embeddings, examples=args.examples,
                    steps=args.steps, generation_steps=args.generation_steps, bootstrap=args.bootstrap,
                    progress=not args.quiet)
    # No default model, an unreadable or absent bundle, a corrupt data shard, a resolution or seed out of range
    except (ValueError, OSError, ShardError) as e:
        print(f"polymodal eval: {e}", file=sys.stderr)  # one line, exit code 2, as every command's bad input
        return 2
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {time.perf_counter() - start:.0f} s")
    return 0
