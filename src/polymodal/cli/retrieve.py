"""``polymodal retrieve``: gallery indexes of global embeddings (build, search) and retrieval from any inputs
(src/polymodal/retrieval)."""

from __future__ import annotations

import argparse

from .common import _THREADS_HELP, _fail, _notice, _parse_from, _set_threads


def _cmd_retrieve_build(args: argparse.Namespace) -> int:
    from ..data.world import ShardError
    from ..retrieval import GalleryIndex

    try:
        _check_out(args.out)
        index = GalleryIndex.from_world(args.world, modality=args.modality, metric=args.metric, limit=args.limit)
        index.save(args.out)
    except (ValueError, KeyError, OSError, ShardError) as e:
        return _fail("retrieve build", e)
    print(f"{index}: {args.out}")
    return 0


def _cmd_retrieve_search(args: argparse.Namespace) -> int:
    """Queries are the stored vectors of samples of a world folder (the gallery's own by default): a look at what
    the gallery holds and the ceiling a predicted embedding can reach. Predicted queries: `polymodal.retrieval.
    retrieve` with a sampler from `polymodal.generation`."""
    from pathlib import Path

    import numpy as np
    import torch

    from ..data.world import ShardError, read_sample
    from ..retrieval import GalleryIndex, Retrieval, draw_matches, world_pictures
    from ..viz import picture, save_png

    try:
        _check_size(args.size)
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
        # No world folder, or keys that are not sample numbers: no pictures to show; its keys as text (as query's)
        pictures = world_pictures(gallery) if gallery and not isinstance(index.keys[0], str) else None
        out = save_png(draw_matches(result, pictures or (lambda key: f"#{key}"), queries=queries, size=args.size,
                                    kind="rgb" if pictures else "caption"),
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

    from ..data.world import ShardError
    from ..pipeline.demo import default_model
    from ..retrieval import query

    if not args.index:
        return _fail("retrieve", ValueError("give --index and --from inputs (and --model; default: the shipped "
                                            "model) to retrieve, or a subcommand: build, search"))
    _set_threads(args.threads)
    try:
        _check_size(args.size)
        inputs = _parse_from(args.inputs)
        out = Path(args.query_out) if args.query_out else Path(args.index) / "query.png"
        q = query(default_model(args.model), args.index, inputs, modality=args.modality, k=args.query_k,
                  steps=args.steps, seed=args.seed, resize=not args.no_resize, notify=_notice, out=out,
                  gallery=args.gallery_world, size=args.size)
    except (ValueError, KeyError, IndexError, OSError, ShardError) as e:  # IndexError, ShardError: --gallery-world
        return _fail("retrieve", e)
    for b, (keys, scores) in enumerate(zip(q.result.hits.keys, q.result.hits.scores.tolist())):
        print(f"query {b} ({q.modality}): " + "  ".join(f"#{k} {s:.3f}" for k, s in zip(keys, scores)))
    print(f"matches: {q.path}")
    return 0


def _check_out(out: str) -> None:
    """An --out folder must be new, empty or a gallery index (rewritten in place): the index's README.md and
    config.json would replace another folder's (a world's, a model's); a file there is the commands' one check."""
    import json

    from ..pipeline.outputs import check_out

    path = check_out(out, "--out")
    if not path.is_dir() or not any(path.iterdir()):
        return
    try:
        is_index = json.loads((path / "config.json").read_bytes()).get("_class_name") == "GalleryIndex"
    except (OSError, ValueError, AttributeError):
        is_index = False
    if not is_index:
        raise ValueError(f"--out {out} holds other files (it is not a gallery index folder): choose a new or empty "
                         "folder")


def _check_size(size: int) -> None:
    if size < 1:  # PIL's own word for it names no option
        raise ValueError(f"--size must be at least 1 pixel, got {size}")


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
