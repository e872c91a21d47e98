"""The `polymodal` command. Thin: parse arguments, call the library."""

# The docstring above is `polymodal --help`'s description, word for word. The commands live in one module per group
# (common: what they share; data; training: train and tokenizer; retrieve; generate: generate, bundle, embed; info:
# info, demo, serve; eval and probe in polymodal.eval); this module assembles the parser in the order of `polymodal
# --help` and holds main(). The entry point (pyproject: polymodal.cli:main), `python -m polymodal`, recipes
# (`from polymodal.cli import load_recipe`) and tests import from here, so the names below stay importable here.

from __future__ import annotations

import argparse
import os
import sys

from .common import _THREADS_HELP, _TOKENIZER_HELP, _fail, _notice, _parse_from, _set_threads  # noqa: F401
from .data import (  # noqa: F401
    _add_data_commands,
    _add_dataset_commands,
    _cmd_data_label,
    _cmd_data_show,
    _cmd_data_synth,
    _cmd_data_tokenize,
    _parse_pairs,
)
from .generate import (  # noqa: F401
    _add_bundle_parser,
    _add_embed_parser,
    _add_generate_parser,
    _cmd_bundle,
    _cmd_embed,
    _cmd_generate,
)
from .info import _add_demo_parser, _add_serve_parser, _cmd_demo, _cmd_info, _info_model  # noqa: F401
from .retrieve import (  # noqa: F401
    _add_retrieve_parser,
    _cmd_retrieve_build,
    _cmd_retrieve_query,
    _cmd_retrieve_search,
)
from .training import (  # noqa: F401
    _add_tokenizer_commands,
    _add_tokenizer_train_command,
    _cmd_tokenizer_train,
    _cmd_tokenizer_train_text,
    _cmd_train,
    _done,
    load_recipe,
)

__all__ = ["build_parser", "load_recipe", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    # info and train are set up here, with this module's names: a test replaces `polymodal.cli._cmd_info`
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
    from ..eval.command import add_parser as add_eval_parser  # here: `polymodal info` needs none of it

    add_eval_parser(sub)
    from ..eval.probe import add_parser as add_probe_parser

    add_probe_parser(sub)
    _add_generate_parser(sub)
    _add_demo_parser(sub)
    _add_bundle_parser(sub)
    _add_embed_parser(sub)
    _add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ..nn.linear import setting

        setting()  # a bad POLYMODAL_FP32_LINEAR is refused before any work, not at the first product
    except ValueError as e:
        print(f"polymodal: {e}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except SystemExit as e:
        # Commands refuse bad input with SystemExit("polymodal CMD: ..."): one line on stderr and exit code 2,
        # as every other refusal (`_fail`) and argparse's usage errors; SystemExit(0/1) passes through.
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    except BrokenPipeError:
        # The reader went away (`polymodal info | head`): not an error of ours. Python would still try to flush
        # stdout at exit and print a second BrokenPipeError, so stdout is pointed at devnull first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process that SIGPIPE ended (128 + 13)

