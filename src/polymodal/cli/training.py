"""``polymodal train`` and ``polymodal tokenizer train|train-text``: recipes through the one training loop
(src/polymodal/train) and the WordPiece text tokenizer. The ``train`` parser itself is assembled in
`polymodal.cli.build_parser`, beside ``info``."""

from __future__ import annotations

import argparse
import math
from contextlib import contextmanager
from pathlib import Path

from .common import _fail, _notice


def _done(result) -> str:
    if math.isnan(result.final_loss):  # resumed at its last step: nothing trained, the release rewritten
        return f"done: already at step {result.steps}, nothing left to train"
    return f"done: {result.steps} steps, training loss {result.final_loss:.4f}"


def load_recipe(path: str, command: str = "train"):
    """A recipe is a Python file under configs/ defining ``config() -> ExperimentConfig``; its refusals name
    ``command`` as every other refusal of the command line does ('polymodal train: recipe ...')."""
    import importlib.util

    who = f"polymodal {command}"
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"{who}: recipe {path!r} not found")
    spec = importlib.util.spec_from_file_location(f"polymodal_recipe_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:  # the file and line are all there is to say; any other error keeps its traceback
        raise SystemExit(f"{who}: recipe {path}: line {e.lineno}: {e.msg}") from None
    if not hasattr(module, "config"):
        raise SystemExit(f"{who}: recipe {path} defines no config() function")
    from ..config import ExperimentConfig

    try:
        cfg = module.config()
    except SystemExit as e:  # a recipe's own refusal (a bad POLYMODAL_* variable): say whose it is
        if isinstance(e.code, str) and not e.code.startswith("polymodal"):
            raise SystemExit(f"{who}: recipe {path}: {e.code}") from None
        raise
    if not isinstance(cfg, ExperimentConfig):
        raise SystemExit(f"{who}: recipe {path}: config() returned {type(cfg).__name__}, not an ExperimentConfig")
    return cfg


def _refused(e: BaseException) -> BaseException:
    """What a run stopped by (a bad value, a resume with other settings, data that is missing or corrupt, a loss
    that diverged, a folder or disk that refuses a write) as one line: an OSError without Python's "[Errno N]", and
    its path; a ShardError names its shard already."""
    if isinstance(e, OSError) and e.strerror is not None:
        return OSError(f"{e.strerror}: {e.filename}" if e.filename else e.strerror)
    return e


@contextmanager
def _warnings_as_notices():
    """While the block runs, a damaged checkpoint that a resumed run skips (`CheckpointSkipped`) and a torn last line
    of metrics.jsonl that it drops (`TornMetricsLine`), warnings of the library, are printed as this command's
    one-line notices when they happen, not in Python's warning format with the source line that raised them. Other
    warnings print as before."""
    import warnings

    from ..train.checkpoint import CheckpointSkipped
    from ..train.metrics import TornMetricsLine

    with warnings.catch_warnings():  # restores warnings.showwarning on exit
        show = warnings.showwarning

        def notice(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, (CheckpointSkipped, TornMetricsLine)):
                _notice(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = notice
        yield


def _cmd_train(args: argparse.Namespace) -> int:
    from ..config import ConfigError, apply_overrides
    from ..data.world import ShardError
    from ..train.loop import CheckpointMismatch, TrainingDiverged, train

    try:
        with _warnings_as_notices():
            result = train(apply_overrides(load_recipe(args.recipe), args.overrides))
    except (ConfigError, CheckpointMismatch, ShardError, TrainingDiverged, OSError) as e:
        return _fail("train", _refused(e))
    if result.release_dir is not None:
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"{_done(result)}{val}\nrun folder: {result.run_dir}\nrelease:    {result.release_dir}")
    return 0


def _cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from ..config import ConfigError, apply_overrides
    from ..data.world import ShardError
    from ..train.loop import CheckpointMismatch, TrainingDiverged, train

    try:
        cfg = apply_overrides(load_recipe(args.recipe, "tokenizer train"), args.overrides)
        if not cfg.objective.startswith("tokenizer"):
            raise ConfigError(f"{args.recipe} trains objective {cfg.objective!r}, not a tokenizer (use "
                              "`polymodal train`)")
        with _warnings_as_notices():
            result = train(cfg)
    except (ConfigError, CheckpointMismatch, ShardError, TrainingDiverged, OSError) as e:
        return _fail("tokenizer train", _refused(e))
    if result.release_dir is not None:
        # vector tokenizers (features, global embeddings) have no pictures to write
        pictures = " (reconstructions/ holds a PNG per evaluation)" if (
            Path(result.run_dir) / "reconstructions").is_dir() else ""
        print(f"{_done(result)}\nrun folder: {result.run_dir}\ntokenizer:  {result.release_dir}{pictures}")
    return 0


def _add_tokenizer_train_command(tsub) -> None:
    """``polymodal tokenizer train RECIPE``: image and vector tokenizers through the training engine."""
    p = tsub.add_parser("train", help="train a tokenizer from a recipe (configs/tokenizer_*.py); torchrun-ready")
    p.add_argument("recipe", help="a recipe file defining config()")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    p.set_defaults(func=_cmd_tokenizer_train)


def _cmd_tokenizer_train_text(args: argparse.Namespace) -> int:
    from ..data.world.scene import OBJECT_CLASSES
    from ..tokenizers.text import train_text_tokenizer
    from .data import _check_out

    _check_out(args.out, "tokenizer train-text")
    classes = args.classes if args.classes is not None else OBJECT_CLASSES
    try:
        tok = train_text_tokenizer(args.corpus, vocab_size=args.vocab_size, extra_classes=classes,
                                   max_length=args.max_length, show_progress=not args.quiet)
        tok.save_pretrained(args.out)
    except (ValueError, OSError) as e:
        raise SystemExit(f"polymodal tokenizer train-text: {_refused(e)}") from None
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
