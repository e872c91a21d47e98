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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="list registered modalities and model presets")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
