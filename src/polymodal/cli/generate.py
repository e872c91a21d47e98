"""``polymodal generate|bundle|embed``: a model with its tokenizers on the user's files: any-to-any generation,
one bundle folder, encoder features (src/polymodal/pipeline)."""

from __future__ import annotations

import argparse
import sys

from .common import _DEVICE_HELP, _MODEL_HELP, _THREADS_HELP, _TOKENIZER_HELP, _fail, _notice, _parse_from, _set_threads


def _cmd_generate(args: argparse.Namespace) -> int:
    from ..pipeline import Pipeline
    from ..pipeline.demo import default_model
    from ..pipeline.official_values import check_decode_settings
    from ..pipeline.outputs import check_out
    from ..pipeline.settings import check_settings

    _set_threads(args.threads)
    try:
        # the rule the server and the library apply too (pipeline.settings), checked before the model loads
        check_settings(prefix="--", steps=args.steps, temperature=args.temperature, guidance=args.guidance,
                       seed=args.seed)
        check_decode_settings(args.decode_steps, args.sampler, prefix="--")
        check_out(args.out, "--out")
        inputs = _parse_from(args.inputs)
        pipe = Pipeline.from_pretrained(default_model(args.model), text_tokenizer=args.text_tokenizer,
                                        tokenizers=args.tokenizer, device=args.device, adapters=args.adapters,
                                        dtype=args.dtype, low_memory=args.low_memory)
        galleries = {}
        if args.index:  # checked before generation: a wrong gallery costs no minutes, writes nothing
            from ..retrieval.captions import caption_galleries, nearest_captions, summary_lines, write_captions

            given = list(pipe.resolve_inputs(inputs).values())
            run = pipe.plan(args.to, plan=args.plan, steps=args.steps, given=given).targets
            galleries = caption_galleries(pipe, args.index, outputs=run, k=args.k)
        out = pipe.generate(inputs, args.to, plan=args.plan, steps=args.steps, temperature=args.temperature,
                            guidance=args.guidance, seed=args.seed, resize=not args.no_resize, notify=_notice,
                            decode_steps=args.decode_steps, sampler=args.sampler, progress=sys.stderr.isatty())
        nearest = nearest_captions(out.values, galleries, k=args.k) if galleries else {}
        before = _output_files(args.out)
        paths = out.save(args.out)
        paths[-1:-1] = write_captions(args.out, nearest, galleries) if galleries else []
    except (ValueError, KeyError, OSError) as e:
        return _fail("generate", e)
    left = sorted(str(f.relative_to(args.out)) for f in before - set(paths))
    if left:  # files of another run beside these outputs would read as this run's
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        _notice(f"{args.out} also holds files this run did not write (an earlier run's?): {', '.join(left[:5])}{more}")
    for line in summary_lines(nearest) if galleries else []:
        print(line)
    print(f"{', '.join(out.plan.targets)} from {', '.join(out.inputs) or 'nothing'}: {len(paths)} files in "
          f"{args.out} (grid: {paths[-1]})")
    return 0


def _output_files(out: str) -> set:
    """The files in ``out`` where `Outputs.save` writes (the folder and its sample_<b>/ folders)."""
    from pathlib import Path

    root = Path(out)
    folders = [root, *root.glob("sample_*")] if root.is_dir() else []
    return {f for d in folders if d.is_dir() for f in d.iterdir() if f.is_file()}


def _cmd_bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..pipeline import Pipeline
    from ..pipeline.outputs import check_out

    try:
        out = check_out(args.out, "--out").resolve()
        # Writing over a source it is still reading from (--out the --model folder itself) rewrote that folder in
        # place, e.g. the shipped float16 weights as float32: refused, whatever the flags.
        sources = [("--model", args.model), ("--text-tokenizer", args.text_tokenizer),
                   *(("--tokenizer", t.partition("=")[2] or t) for t in args.tokenizer)]
        for flag, src in sources:
            if src and Path(src).exists() and Path(src).resolve().is_relative_to(out):
                raise ValueError(f"--out {args.out} holds {flag} {src}; write the bundle to another folder")
        path = Pipeline.from_pretrained(args.model, text_tokenizer=args.text_tokenizer,
                                        tokenizers=args.tokenizer).save(args.out, half=args.half)
    except (ValueError, KeyError, OSError) as e:
        return _fail("bundle", e)
    print(f"pipeline bundle: {path}")
    return 0


def _add_generate_parser(sub) -> None:
    """``polymodal generate``: any-to-any generation from files (src/polymodal/pipeline)."""
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
    p.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    p.add_argument("--low-memory", action=argparse.BooleanOptionalAction, default=True,
                   help="a released 4M model holds one tokenizer at a time, loaded while its input encodes or its "
                        "output decodes (each checked before the run from its config and header; same outputs; "
                        "4M-21 B's twelve are 9 GiB in float32). On by default: a run loads each tokenizer once "
                        "either way (benchmarks/memory_inference.py); a bundle's tokenizers load with it")
    p.add_argument("--dtype", help="the transformer's weights (and a release's DiVAE UNets): float32 (default), "
                                   "bfloat16 (MaskGIT ~3x and DiVAE decodes ~1.7x faster on CPUs with "
                                   "AVX512-BF16/AMX, captions of one image not; greedy tokens can differ from "
                                   "float32's) or float16")
    p.set_defaults(func=_cmd_generate)


def _add_bundle_parser(sub) -> None:
    """``polymodal bundle``: a FourM folder and its tokenizers as one pipeline bundle folder."""
    p = sub.add_parser("bundle", help="put a FourM folder and its tokenizers into one pipeline bundle folder")
    p.add_argument("--model", required=True, help="a FourM folder (e.g. a run's release/)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help="image/vector tokenizer folders")
    p.add_argument("--text-tokenizer", help="the text tokenizer folder or JSON")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--half", action="store_true", help="store large tensors in float16 (half the size)")
    p.set_defaults(func=_cmd_bundle)


def _cmd_embed(args: argparse.Namespace) -> int:
    import time

    from ..pipeline import Pipeline
    from ..pipeline.demo import default_model
    from ..pipeline.embed import check_out_file, embed_folder, list_images

    _set_threads(args.threads)
    start, notices = time.perf_counter(), {}
    try:
        list_images(args.images)  # an empty or absent folder fails before the model loads
        check_out_file(args.out, "--out")
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
    p.add_argument("--model", help=_MODEL_HELP)
    p.add_argument("--images", required=True,
                   help="folder of images: JPEG, PNG, WebP, TIFF, BMP, GIF (searched recursively, sorted by path)")
    p.add_argument("--out", required=True, help="safetensors file to write (features (N, D); metadata: files)")
    p.add_argument("--tokens", action="store_true", help="also write every image's token features (N, T, D)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (32)")
    p.add_argument("--tokenizer", nargs="*", default=[], metavar="DIR", help=_TOKENIZER_HELP)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)
