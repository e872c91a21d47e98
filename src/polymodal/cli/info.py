"""``polymodal info|demo|serve``: the commands that show the registry and a model to a person: the tables, a
demo figure and page, the local web demo (src/polymodal/pipeline, src/polymodal/serve)."""

from __future__ import annotations

import argparse

from .common import _DEVICE_HELP, _MODEL_HELP, _THREADS_HELP, _TOKENIZER_HELP, _fail, _notice, _set_threads


def _cmd_info(args: argparse.Namespace) -> int:
    from .. import config, modalities

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
    print(f"\n{_machine()}")
    if isinstance(model, str):
        print(f"\n{model}")
        return 0
    path, pipe = model
    from ..pipeline.describe import describe

    default = " (the default of generate, demo, eval, serve and retrieve)" if args.model is None else ""
    print(f"\nmodel {path}{default}: {len(pipe.inputs)} inputs, {len(pipe.outputs)} outputs")
    print(describe(pipe, model_arg=args.model))
    return 0


def _machine() -> str:
    """torch, threads and the CPU kernels this process uses (what speed on this machine depends on)."""
    import torch

    from ..nn.gemm import native_bf16_cpu
    from ..nn.linear import ENV, backend

    kernel = {"onednn": "oneDNN (faster than BLAS here)", "blas": "torch's BLAS"}[backend()]
    cpu = torch.backends.cpu.get_cpu_capability()
    gpu = f", CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"this machine: torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu}, bf16 "
            f"instructions {'yes' if native_bf16_cpu() else 'no'}{gpu}; float32 linear layers by {kernel} "
            f"({ENV}=onednn|blas|auto)")


def _info_model(model: str | None):
    """(path, Pipeline) of ``model`` or the default model; a line saying why there is none when the default is
    absent (`polymodal info` still lists the registry)."""
    from ..pipeline import Pipeline, PipelineError
    from ..pipeline.demo import default_model

    try:
        path = default_model(model)
    except PipelineError as e:
        return f"default model: none ({e})"
    return path, Pipeline.from_pretrained(path)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..pipeline.demo import run_demo
    from ..pipeline.outputs import check_out

    _set_threads(args.threads)
    try:
        check_out(args.out, "--out")
        if args.scenes < 1 and args.image is None:
            raise ValueError(f"--scenes: must be a whole number of at least 1, got {args.scenes}")
        r = run_demo(args.model, image=args.image, out=args.out, scenes=args.scenes, seed=args.seed,
                     device=args.device, notify=_notice, text_tokenizer=args.text_tokenizer,
                     tokenizers=args.tokenizer)
    except (ValueError, KeyError, OSError) as e:
        return _fail("demo", e)
    for title, why in r.skipped.items():
        print(f"skipped {title}: {why}")
    print(f"figure: {r.figure}\npage:   {r.html}\n({', '.join(r.tasks)}; {r.seconds:.1f} s)")
    return 0


def _add_demo_parser(sub) -> None:
    """``polymodal demo``: held-out world scenes (or an image) through a model (src/polymodal/pipeline/demo.py)."""
    p = sub.add_parser("demo", help="held-out world scenes through a model: RGB -> all, caption/boxes -> RGB; "
                                    "writes a PNG figure and an HTML page")
    p.add_argument("--model", help=_MODEL_HELP)
    p.add_argument("--image", help="your own image instead of world scenes")
    p.add_argument("--out", default="demo", help="folder to write (default ./demo)")
    p.add_argument("--scenes", type=int, default=2, help="world scenes (default 2)")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or JSON (official checkpoints: 4M's 30k JSON)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    p.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    p.set_defaults(func=_cmd_demo)


def _add_serve_parser(sub) -> None:
    """``polymodal serve``: the local web demo (src/polymodal/serve; needs the ``serve`` extra)."""

    def run(args: argparse.Namespace) -> int:
        try:
            from ..serve import serve
        except ImportError as e:
            return _fail("serve", ImportError(f'the web demo needs: pip install "polymodal[serve]" ({e.name})'))
        try:
            serve(args.model, host=args.host, port=args.port, threads=args.threads, device=args.device,
                  text_tokenizer=args.text_tokenizer, tokenizers=args.tokenizer)
        except (ValueError, KeyError, OSError) as e:
            return _fail("serve", e)
        return 0

    p = sub.add_parser("serve", help="a web demo on this machine: generation and retrieval in the browser")
    p.add_argument("--model", help=_MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--text-tokenizer", help="text tokenizer folder or JSON (official checkpoints: 4M's 30k JSON)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--threads", type=int, default=1, help=_THREADS_HELP)
    p.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    p.set_defaults(func=run)
