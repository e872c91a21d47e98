"""Memory at inference: 4M-21 B with all its tokenizers at their released shapes (random weights), loaded the way a
user loads a release, running RGB -> all, with every tokenizer held or one at a time (low-memory mode); L and XL
from the same accounting.

Two steps. ``--make DIR`` writes a release in the official layout with the reference's own classes (it needs the
reference checkout in ``POLYMODAL_REFERENCE`` and an environment with its dependencies): ``4M-21_B/`` (its ``FM``:
dim 768, 12 + 12 layers, the 4M-21 domains and vocabularies) and one folder per released tokenizer (its ``DiVAE`` /
``VQVAE`` with the arguments of its tokenizer configs under ``cfgs/default/tokenization/``: ViT-B encoders, the
patched UNet, ViT-B decoders, Bottleneck-MLP + Memcodes). The measurement needs only polymodal: one fresh process
per dtype loads the model and every tokenizer of the release, runs the transformer for RGB -> all
(``plan="rgb_to_all"``, the demo's chain: every output but tok_rgb; under autocast in bf16) and decodes every output
through its tokenizer (``Pipeline.decode``; diffusion decoders at ``--decode-steps`` DDIM steps, which do not change
the peak), and reports per phase the resident memory after it and its peak (VmHWM, reset before each phase through
/proc/self/clear_refs), tracemalloc's peak of Python allocations, and the bytes of the weights (a folder serving
two domains, 4M-21's edges, counted once).

Loading: float32 as a user does (``Pipeline.from_pretrained(DIR/4M-21_B, text_tokenizer=..., tokenizers={domain:
folder})``, then ``tokenizers.require``); bf16 / fp16 straight in that dtype (``FourM.from_pretrained(dtype=)``,
``load_official_tokenizer(dtype=)``: no float32 copy on the way, `polymodal.nn.loading`), made into the same
pipeline (``Pipeline.from_pretrained(dtype=)`` would keep the tokenizers in float32). The table at the end: per size
and dtype, the model's weights, the tokenizers', the activations' peak above the weights during RGB -> all, the
interpreter with torch and polymodal, and their total, the least memory that size needs. B measured; L and XL: their
weights counted exactly (the model built on the meta device at their real shapes), the tokenizers those of B (the
same release serves every size), the transformer's activations B's scaled by width (at a head width of 64 attention
grows with it too), the decoders' B's.

``--low-memory`` adds one more process per dtype loaded as a user does with ``Pipeline.from_pretrained(...,
dtype=, low_memory=True)`` (`polymodal.pipeline.official`: every tokenizer checked from its config and header, each
loaded only while its output decodes, then released): in bf16 that is the model in bf16 and the tokenizers in
float32 but for the DiVAE UNets (the pipeline's rule), not the all-bf16 tokenizers of the bf16 all-held row. Its
decode phase holds one tokenizer at a time, so its peak is that tokenizer with its decode: the table's "decode" of
a low-memory row is that peak above the RSS after the transformer, and its total the larger of the two phases.
Columns as the script prints them (GiB): model and tokenizer weights (one at a time: the largest folder), the
activations' peaks above the RSS before each phase, the rest (interpreter, torch, polymodal, the allocator's slack).

    POLYMODAL_REFERENCE=/work/ref /work/refenv/bin/python benchmarks/memory_inference.py --make /tmp/lowmem/release
    python benchmarks/memory_inference.py /tmp/lowmem/release --dtypes fp32 bf16 --threads 1 --low-memory [--split]

``--make`` took ~1 min and 13 GB of disk. Measured 2026-12-06 10:14-10:25 UTC on the 2-core, 24 GiB CPU machine,
load 2.1-3.0 (other helpers' tests and a reference benchmark running beside it), torch 2.13, 1 thread, 1 DDIM
step, one process per dtype and mode, the four in one run, GiB:

| size | dtype | tokenizers | model | tokenizer weights held | activations: transformer | decode | rest | total |
|---|---|---|---|---|---|---|---|---|
| B (measured) | fp32 | all held | 3.14 | 9.02 | 1.19 | 0.01 | 0.42 | 13.8 |
| B (measured) | fp32 | one at a time | 3.14 | 1.07 | 1.11 | 0.58 | 0.67 | 4.9 |
| B (measured) | bf16 | all held | 1.57 | 4.51 | 0.87 | 0.04 | 0.43 | 7.4 |
| B (measured) | bf16 | one at a time | 1.57 | 0.82 | 0.82 | 1.18 | 1.11 | 3.9 |
| L (accounted) | fp32 | all held | 5.83 | 9.02 | 1.58 | 0.01 | 0.42 | 16.9 |
| L (accounted) | fp32 | one at a time | 5.83 | 1.07 | 1.48 | 0.58 | 0.67 | 8.0 |
| L (accounted) | bf16 | all held | 2.91 | 4.51 | 1.15 | 0.04 | 0.43 | 9.0 |
| L (accounted) | bf16 | one at a time | 2.91 | 0.82 | 1.09 | 1.18 | 1.11 | 5.2 |
| XL (accounted) | fp32 | all held | 16.91 | 9.02 | 3.16 | 0.01 | 0.42 | 29.5 |
| XL (accounted) | fp32 | one at a time | 16.91 | 1.07 | 2.95 | 0.58 | 0.67 | 20.5 |
| XL (accounted) | bf16 | all held | 8.46 | 4.51 | 2.31 | 0.04 | 0.43 | 15.7 |
| XL (accounted) | bf16 | one at a time | 8.46 | 0.82 | 2.18 | 1.18 | 1.11 | 11.7 |

B's peaks (RSS with the interpreter), all held / one at a time: fp32 13.77 / 4.91, bf16 7.38 / 3.86. All held, the
peak is in the transformer's phase; one at a time, in the decode phase (the fp32 low-memory "decode" is small
because the RSS after the transformer still held 0.7 GiB of freed activations, which the first tokenizer's load
reused: RSS 4.34 before it, 3.66 after, 0.06 above the model's 3.60). The model loaded 3.59 (fp32) / 2.08 (bf16);
every tokenizer loaded 12.59 / 6.51; checked instead (low-memory) 3.64 / 2.06. Time, fp32 (like for like): every
tokenizer loaded 12.2 s + decoded 5.1 s = 17.3 s all held; checked 2.1 s + loaded and decoded one at a time
17.0 s = 19.1 s low-memory, +1.8 s (1%) of a ~150 s run; the whole runs took 151 s / 147 s (noise: the
transformer's phase 123 s / 117 s). In bf16 the low-memory decode phase (16.6 s vs 9.5 + 2.6) loads float32
tokenizers and casts them under autocast, not the same work. Releasing gives the memory back only with glibc's
``malloc_trim`` after ``gc.collect`` (a fresh process loading, releasing and loading again B's CLIP, depth and
DINOv2-global tokenizers in fp32: 0.68, 1.07, 0.46 GiB stayed resident without it; trim 38-74 ms) and, under
``torch.autocast``, with ``torch.clear_autocast_cache`` (a released CLIP VQ-VAE decoded under bf16 autocast kept
its 0.53 GiB of casts; this run's first try without it ended its bf16 low-memory decode at RSS 5.18, peak 6.03).

Earlier runs (03:18-03:27 UTC, load 2.1-3.4) gave 13.4 / 8.1 all held for B; the transformer's activations vary
between runs (fp32 0.81 then, 1.19 here; bf16 1.58 then, 0.87 here). Tokenizers: 12 folders serving 13 domains
(the edge DiVAE serves two). Without its tokenizers (token outputs only) B needs 4.5 (fp32) / 3.5 (bf16) GiB
(``--split``'s model half, 03:05-03:18, which gave 13.7 / 8.2 for B in two processes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import torch

# Run as a script, this folder comes first on sys.path, and its tokenizers.py would shadow the `tokenizers` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

MODEL = "4M-21_B"
GIB = 2**30
TEXT_FILE = "text_tokenizer_4m_wordpiece_30k.json"
DOMAINS_IN = ("caption", "t5_caption", "det", "metadata", "rgb@224", "tok_rgb@224", "tok_normal@224", "tok_depth@224",
              "tok_semseg@224", "tok_clip@224", "human_poses", "tok_dinov2@224", "tok_dinov2_global",
              "tok_imagebind@224", "tok_imagebind_global", "tok_sam_edge@224", "tok_canny_edge@224", "color_palette",
              "sam_instance")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# The released tokenizers (hub.RELEASED_TOKENIZERS) as the reference's constructor arguments. From their training
# configs: ViT-B/16 encoders (/14 for DINOv2 and ImageBind maps), lucid VQ with 32-d normalized codes and a tanh
# MLP, DiVAE decoders "unet_patched" with x0 prediction and linear betas, ViT-B decoders, Bottleneck-MLP (6 blocks,
# width 1024) with Memcodes. Codes per item follow the release names: 16 for the global vectors, 8 for poses.
_VQ = dict(enc_type="vit_b_enc", post_mlp=True, quant_type="lucid", latent_dim=32, norm_codes=True,
           sync_codebook=False, ignore_keys=[], image_size=224, patch_size=16)
_DIVAE = dict(_VQ, dec_type="unet_patched", num_train_timesteps=1000, scheduler="ddpm", beta_schedule="linear",
              prediction_type="sample", clip_sample=False, thresholding=True, zero_terminal_snr=True,
              cls_free_guidance_dropout=0.0, masked_cfg=False, conditioning="concat")
_MLP = dict(enc_type="BottleneckMLP/B_6-Wi_1024", dec_type="BottleneckMLP/B_6-Wi_1024", image_size=1, patch_size=1,
            quant_type="memcodes", latent_dim=1024, norm_codes=True, sync_codebook=False, ignore_keys=[])
TOKENIZERS = {  # folder -> (class, arguments, domains it serves)
    "rgb_16k": ("DiVAE", dict(_DIVAE, n_channels=3, codebook_size=16384), ("tok_rgb@224",)),
    "depth_8k": ("DiVAE", dict(_DIVAE, n_channels=1, codebook_size=8192), ("tok_depth@224",)),
    "normal_8k": ("DiVAE", dict(_DIVAE, n_channels=3, codebook_size=8192), ("tok_normal@224",)),
    "edge_8k": ("DiVAE", dict(_DIVAE, n_channels=1, codebook_size=8192), ("tok_canny_edge@224", "tok_sam_edge@224")),
    "semseg_4k": ("VQVAE", dict(_VQ, dec_type="vit_b_dec", n_channels=64, n_labels=134, codebook_size=4096,
                                out_conv=False), ("tok_semseg@224",)),
    "CLIP-B16_8k": ("VQVAE", dict(_VQ, dec_type="vit_b_dec", n_channels=512, patch_proj=False, codebook_size=8192,
                                  out_conv=False), ("tok_clip@224",)),
    "DINOv2-B14_8k": ("VQVAE", dict(_VQ, dec_type="vit_b_dec", n_channels=768, patch_proj=False, patch_size=14,
                                    codebook_size=8192, out_conv=False), ("tok_dinov2@224",)),
    "ImageBind-H14_8k": ("VQVAE", dict(_VQ, dec_type="vit_b_dec", n_channels=1280, patch_proj=False, patch_size=14,
                                       codebook_size=8192, out_conv=False), ("tok_imagebind@224",)),
    "DINOv2-B14-global_8k_16": ("VQVAE", dict(_MLP, n_channels=768, codebook_size=8192, num_codebooks=16),
                                ("tok_dinov2_global",)),
    "ImageBind-H14-global_8k_16": ("VQVAE", dict(_MLP, n_channels=1024, codebook_size=8192, num_codebooks=16),
                                   ("tok_imagebind_global",)),
    "sam-instance_1k_64": ("VQVAE", dict(_VQ, dec_type="vit_b_dec", image_size=64, n_channels=1, latent_dim=1024,
                                         codebook_size=1024, out_conv=True, post_mlp=False), ("sam_instance",)),
    "human-poses_1k_8": ("VQVAE", dict(_MLP, n_channels=207, codebook_size=1024, num_codebooks=8), ("human_poses",)),
}


# ----------------------------------------------------------------------------------------------- --make


def make(out: Path, reference: str) -> None:
    """The release, random weights, written by the reference's classes (their hub mixin's save_pretrained)."""
    sys.path.insert(0, reference)
    from fourm.models.fm import FM
    from fourm.vq.vqvae import VQVAE, DiVAE

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    domains_out = [d for d in DOMAINS_IN if d not in ("rgb@224", "t5_caption")]
    config = dict(dim=768, encoder_depth=12, decoder_depth=12, num_heads=12, mlp_ratio=4, act_layer="SiLU",
                  gated_mlp=True, qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False, image_size=224,
                  patch_size=16, share_modality_embeddings=False, domains_in=list(DOMAINS_IN),
                  domains_out=domains_out)
    for name, build in [(MODEL, lambda: FM(config))] + [
            (f"tokenizers/{k}", lambda c=c, a=a: {"DiVAE": DiVAE, "VQVAE": VQVAE}[c](**a))
            for k, (c, a, _) in TOKENIZERS.items()]:
        if (out / name / "model.safetensors").is_file():
            continue
        t = time.perf_counter()
        model = build()
        model.save_pretrained(str(out / name))
        n = sum(p.numel() for p in model.state_dict().values())
        print(f"{name}: {n / 1e6:.1f}M values, {time.perf_counter() - t:.0f} s", flush=True)
        del model
    text = Path(reference) / "fourm/utils/tokenizer/trained" / TEXT_FILE
    (out / TEXT_FILE).write_bytes(text.read_bytes())


# ------------------------------------------------------------------------------------------ measurement


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS: resident now; VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _meminfo(key: str) -> int:
    """A /proc/meminfo figure in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _tensor_bytes(module) -> int:
    """Bytes of a module's parameters and buffers, each tensor counted once."""
    seen = {}
    for t in (*module.parameters(), *module.buffers()):
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def _load_tokenizers(folders: dict[str, Path], dtype: torch.dtype) -> dict:
    """domain -> tokenizer, each folder read once in ``dtype`` (a folder serving two domains, 4M-21's edges: one
    read, a twin per domain sharing its weights, as `pipeline.official` does)."""
    from polymodal.pipeline.official import domain_size, for_domain
    from polymodal.tokenizers.ml4m.folder import load_official_tokenizer

    out, by_folder = {}, {}
    for domain, folder in folders.items():
        if folder in by_folder:
            out[domain] = for_domain(by_folder[folder], domain)
        else:
            out[domain] = by_folder[folder] = load_official_tokenizer(folder, name=domain,
                                                                      image_size=domain_size(domain), dtype=dtype)
    return out


def _meta_bytes(module) -> int:
    """Bytes of a module built on the meta device (each parameter and buffer object counted once)."""
    seen = {id(t): t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())}
    return sum(seen.values())


def _folder_bytes(pipe, folders: dict[str, Path]) -> dict[str, int]:
    """folder name -> the bytes its tokenizer holds once loaded by ``pipe``'s release tokenizers (built on the
    meta device from its config and header, in the dtypes the pipeline loads it in: nothing read)."""
    from polymodal.pipeline.official import load_domain_tokenizer

    cfg, toks = pipe.model.config, pipe.tokenizers
    out = {}
    for domain, folder in folders.items():
        if folder.name not in out:
            tok = load_domain_tokenizer(domain, folder, cfg.modality(domain), device="meta",
                                        diffusion_dtype=toks.diffusion_dtype)
            out[folder.name] = _meta_bytes(tok)
    return out


def measure(release: Path, dtype: str, decode_steps: int, part: str = "all", low_memory: bool = False) -> dict:
    """One process: the phases of a user's RGB -> all run, each with its resident memory after and its peak.

    float32 loads as a user does today (``Pipeline.from_pretrained`` with the tokenizer folders, every tokenizer
    required); another dtype loads the model (``FourM.from_pretrained(dtype=)``) and each tokenizer
    (``load_official_tokenizer(dtype=)``) straight in it, then makes the same pipeline of them (the pipeline has
    no dtype argument).

    ``part`` "model": the model and the transformer's phase only; "tokenizers": the tokenizers and their decode of
    random ids of every image-token output only (the model built on the meta device, for its config): the two
    halves of a run that does not fit beside other work, put together by `least_memory`.

    ``low_memory``: loaded as a user does in either dtype, ``Pipeline.from_pretrained(..., dtype=,
    low_memory=True)`` (the model in ``dtype``; the tokenizers in float32 but a DiVAE's UNet in ``dtype``), every
    tokenizer checked (``require``: config and header only), and each loaded only while its output decodes."""
    tracemalloc.start()
    phases = []

    def phase(name: str, fn):
        print(f"{time.strftime('%H:%M:%S')} {name} ...", file=sys.stderr, flush=True)  # where a killed run died
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        tracemalloc.reset_peak()
        before = _status("VmRSS")
        t = time.perf_counter()
        out = fn()
        phases.append({"phase": name, "s": time.perf_counter() - t, "rss_before": before, "rss": _status("VmRSS"),
                       "peak": _status("VmHWM"), "python_peak": tracemalloc.get_traced_memory()[1]})
        print(f"   RSS {phases[-1]['rss'] / GIB:.2f} GiB, peak {phases[-1]['peak'] / GIB:.2f} GiB", file=sys.stderr,
              flush=True)
        return out

    def imports():
        from polymodal.model import FourM
        from polymodal.pipeline import Pipeline
        from polymodal.pipeline.official import ReleaseTokenizers
        from polymodal.tokenizers import load_tokenizer

        return FourM, Pipeline, ReleaseTokenizers, load_tokenizer

    fourm_cls, pipeline_cls, release_cls, load_tokenizer = phase("python, torch, polymodal imported", imports)
    folders = {d: release / "tokenizers" / k for k, (_, _, domains) in TOKENIZERS.items() for d in domains
               if (release / "tokenizers" / k).is_dir() and part != "model"}
    text = release / TEXT_FILE
    if part == "tokenizers":
        from polymodal.model.checkpoint import config_from_official, read_config, safetensors_shapes

        weights_file = release / MODEL / "model.safetensors"
        cfg = config_from_official(read_config(release / MODEL, weights_file), safetensors_shapes(weights_file),
                                   source=str(release / MODEL))
        with torch.device("meta"):
            model = fourm_cls(cfg, image_decoder_token_tables=True)
        toks = phase("every tokenizer loaded", lambda: _load_tokenizers(folders, DTYPES[dtype]))
        pipe = pipeline_cls(model, release_cls(model.config, text=load_tokenizer(text), given=toks))
    elif low_memory:
        pipe = phase("model loaded (low-memory)", lambda: pipeline_cls.from_pretrained(
            release / MODEL, text_tokenizer=text, tokenizers=folders, low_memory=True,
            dtype=None if dtype == "fp32" else DTYPES[dtype]))
        phase("every tokenizer checked (config and header)", lambda: pipe.tokenizers.require(list(folders)))
    elif dtype == "fp32" and part == "all":
        pipe = phase("model loaded", lambda: pipeline_cls.from_pretrained(
            release / MODEL, text_tokenizer=text, tokenizers=folders))
        phase("every tokenizer loaded", lambda: pipe.tokenizers.require(list(folders)))
    else:
        model = phase("model loaded", lambda: fourm_cls.from_pretrained(release / MODEL, dtype=DTYPES[dtype]))
        toks = phase("every tokenizer loaded", lambda: _load_tokenizers(folders, DTYPES[dtype]))
        pipe = pipeline_cls(model, release_cls(model.config, text=load_tokenizer(text), given=toks))
    if low_memory:  # looking each up would load it: counted on the meta device, held one at a time
        per_folder = _folder_bytes(pipe, folders)
        weights = {"model": _tensor_bytes(pipe.model), "tokenizers": per_folder,
                   "tokenizers distinct": sum(per_folder.values()), "tokenizers held": max(per_folder.values()),
                   "tokenizer domains": len(folders), "tokenizer folders": len(per_folder)}
    else:
        toks = {d: pipe.tokenizers[d] for d in folders}
        distinct = {id(t): t for t in toks.values()}  # a twin shares its weights: count each tensor once
        seen: dict[int, int] = {}
        for t in distinct.values():
            for x in (*t.parameters(), *t.buffers()):
                seen[x.data_ptr()] = x.numel() * x.element_size()
        weights = {"model": _tensor_bytes(pipe.model) if part != "tokenizers" else 0,
                   "tokenizers": {d: _tensor_bytes(t) for d, t in toks.items()},
                   "tokenizers distinct": sum(seen.values()), "tokenizers held": sum(seen.values()),
                   "tokenizer domains": len(toks), "tokenizer folders": len(set(folders.values()))}
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)  # a smooth random picture: noise upsampled
    photo = Image.fromarray(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)).resize((224, 224), Image.BILINEAR)
    error, plan = None, None
    try:
        from polymodal.generation import generate

        plan = pipe.plan(plan="rgb_to_all", given=["rgb@224"])
        autocast = torch.autocast("cpu", dtype=DTYPES[dtype], enabled=dtype != "fp32")
        if part == "tokenizers":  # random ids of every output a loaded tokenizer decodes from a grid of codes
            g = torch.Generator().manual_seed(0)
            mods = {t: pipe.model.config.modality(t) for t in plan.targets if t in folders}
            ids = {t: torch.randint(0, m.vocab_size, (1, m.num_tokens), generator=g) for t, m in mods.items()
                   if m.kind.value == "image_tokens"}
        else:
            conds, _, _ = pipe.prepare({"rgb": photo}, notify=lambda m: None)

            def tokens():
                with torch.no_grad(), autocast:
                    return generate(pipe.model, conds, plan, seed=0)
            ids = phase("RGB -> all: the transformer (every output's tokens)", tokens)
        if part == "model":
            raise StopIteration

        def decode():
            with torch.no_grad(), autocast:
                return pipe.decode(ids, decode_steps=decode_steps, sampler="ddim", seed=0)
        phase(f"RGB -> all: the tokenizers decode ({decode_steps} DDIM step)", decode)
    except StopIteration:
        pass
    except Exception as e:  # noqa: BLE001 - a dtype polymodal cannot run yet: report it, keep the load figures
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if low_memory:
        weights["still loaded after the run"] = [n for n in pipe.tokenizers.loaded if n != "text"]
    return {"dtype": dtype, "part": part, "low_memory": low_memory, "phases": phases, "weights": weights,
            "error": error, "targets": list(plan.targets) if plan is not None else None}


def least_memory(r: dict) -> list[dict]:
    """Per size, in ``r``'s dtype, GiB: model weights (counted from the real shapes, the model built on the meta
    device), tokenizer weights (B's: the same tokenizers serve every size), the activations' peak above the weights
    during RGB -> all (the transformer's phase scaled by width for L and XL, the decoders' phase as B's), the rest
    (interpreter, torch, polymodal, the allocator's slack: B's measured peak less the three) and the total. For B
    the total is the measured peak of the whole run; of a run in two halves (``--split``), the model half's rest
    plus the weights and the larger of the two halves' activations."""
    from polymodal.config import ModelConfig
    from polymodal.model import FourM

    def act(r: dict, start: str) -> int:
        return max((p["peak"] - p["rss_before"] for p in r["phases"] if p["phase"].startswith(start)), default=0)

    if "halves" in r:  # two processes: the model's half and the tokenizers' half
        m, t = r["halves"]
        act_tokens, act_decode = act(m, "RGB -> all: the transformer"), act(t, "RGB -> all: the tokenizers")
        toks, w_b = t["weights"]["tokenizers distinct"], m["weights"]["model"]
        rest = max(p["peak"] for p in m["phases"]) - w_b - act_tokens
        # and what loading the tokenizers' code holds beyond their weights (its own interpreter and torch aside)
        loaded = next(p for p in t["phases"] if p["phase"] == "every tokenizer loaded")
        rest += max(loaded["rss"] - t["phases"][0]["rss"] - toks, 0)
    elif r.get("low_memory"):  # no tokenizer held while the transformer runs; one at a time while decoding
        act_tokens, act_decode = act(r, "RGB -> all: the transformer"), act(r, "RGB -> all: the tokenizers")
        toks, w_b = r["weights"]["tokenizers held"], r["weights"]["model"]
        # the decode phase's peak above the model includes the tokenizer loaded in it (each loaded and freed there)
        rest = max(p["peak"] for p in r["phases"]) - w_b - max(act_tokens, act_decode)
    else:
        act_tokens, act_decode = act(r, "RGB -> all: the transformer"), act(r, "RGB -> all: the tokenizers")
        toks, w_b = r["weights"]["tokenizers distinct"], r["weights"]["model"]
        rest = max(p["peak"] for p in r["phases"]) - w_b - toks - max(act_tokens, act_decode)
    bytes_per = torch.empty((), dtype=DTYPES[r["dtype"]]).element_size()
    domains_out = tuple(d for d in DOMAINS_IN if d not in ("rgb@224", "t5_caption"))
    rows = []
    for size, width in (("B", 768), ("L", 1024), ("XL", 2048)):
        with torch.device("meta"):
            model = FourM(ModelConfig.preset(size, domains_in=DOMAINS_IN, domains_out=domains_out),
                          image_decoder_token_tables=True)
        w = sum(t.numel() for t in (*model.parameters(), *model.buffers())) * bytes_per
        if size == "B":  # the loaded model's own bytes (the same count, for the release's B)
            w = w_b
        act_t = act_tokens * width / 768
        held = max(act_t, act_decode) if r.get("low_memory") else toks + max(act_t, act_decode)
        rows.append({"size": size, "dtype": r["dtype"], "low_memory": bool(r.get("low_memory")),
                     "measured": size == "B", "model": w / GIB, "tokenizers": toks / GIB,
                     "transformer": act_t / GIB, "decode": act_decode / GIB, "rest": rest / GIB,
                     "total": (rest + w + held) / GIB})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("release", nargs="?", help="the folder --make wrote")
    p.add_argument("--make", metavar="DIR", help="write the release (needs POLYMODAL_REFERENCE and its environment)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--decode-steps", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--split", action="store_true", help="two processes per dtype, the model's half and the "
                   "tokenizers' half, put together (for a machine where the whole does not fit beside other work)")
    p.add_argument("--low-memory", action="store_true", help="also run each dtype in low-memory mode (one more "
                   "process per dtype: Pipeline.from_pretrained(low_memory=True)) and report both")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(Path(spec["release"]), spec["dtype"], spec["decode_steps"], spec["part"],
                                 spec.get("low_memory", False))))
        return
    if args.make:
        ref = os.environ.get("POLYMODAL_REFERENCE")
        if not ref:
            print("memory_inference --make: skipped: set POLYMODAL_REFERENCE to a checkout of apple/ml-4m")
            return
        make(Path(args.make), ref)
        return
    if not args.release or not (Path(args.release) / MODEL).is_dir():
        p.error(f"give the folder that --make wrote (with {MODEL}/ in it)")
    # Refuse to start where the weights cannot fit, rather than push a shared machine into the OOM killer.
    files = sum(f.stat().st_size for f in Path(args.release).rglob("*.safetensors"))  # float32 files
    results, rows = [], []
    for dtype, low_memory in [(d, low) for d in args.dtypes for low in ((False, True) if args.low_memory
                                                                         else (False,))]:
        need = files * torch.empty((), dtype=DTYPES[dtype]).element_size() / 4
        avail = _meminfo("MemAvailable")
        if avail < 1.15 * need and not low_memory:
            print(f"memory_inference {dtype}: skipped: the weights alone are {need / GIB:.1f} GiB and only "
                  f"{avail / GIB:.1f} GiB is available (MemAvailable); run it when the machine has room")
            continue
        load = os.getloadavg()[0]
        halves = []
        split = args.split and not low_memory
        for part in ("model", "tokenizers") if split else ("all",):
            spec = {"release": str(Path(args.release).resolve()), "dtype": dtype, "decode_steps": args.decode_steps,
                    "part": part, "low_memory": low_memory}
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec),
                                   "--threads", str(args.threads)], stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{dtype} worker ({part}) failed (exit code {proc.returncode}; -9: killed, e.g. by "
                                   "the OOM killer); its last phase is above")
            halves.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = halves[0]
        if split:
            m, t = halves
            r = {"dtype": dtype, "halves": halves, "error": m["error"] or t["error"],
                 "phases": [dict(x, phase=f"[model half] {x['phase']}") for x in m["phases"]]
                 + [dict(x, phase=f"[tokenizers half] {x['phase']}") for x in t["phases"]],
                 "weights": {**t["weights"], "model": m["weights"]["model"]}}
        r["load"] = [load, os.getloadavg()[0]]
        results.append(r)
        w = r["weights"]
        mode = ", low-memory" if low_memory else ""
        print(f"\n== {dtype}{mode}: model {w['model'] / GIB:.2f} GiB; tokenizers {w['tokenizers distinct'] / GIB:.2f} "
              f"GiB ({w['tokenizer domains']} domains, {w['tokenizer folders']} folders; held at once "
              f"{w['tokenizers held'] / GIB:.2f}); load average "
              f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}" + (f"; stopped: {r['error']}" if r["error"] else ""))
        print(f"   {'phase':58} {'seconds':>8} {'RSS after':>10} {'peak RSS':>9} {'Python peak':>12}")
        for ph in r["phases"]:
            print(f"   {ph['phase']:58} {ph['s']:8.1f} {ph['rss'] / GIB:9.2f}G {ph['peak'] / GIB:8.2f}G "
                  f"{ph['python_peak'] / 2**20:10.1f}M")
        print("   tokenizer weights (GiB): " + ", ".join(f"{d} {b / GIB:.2f}" for d, b in w["tokenizers"].items()))
        if r["error"] is None:
            rows += least_memory(r)
    if rows:
        print("\nThe least memory each size needs for RGB -> all (GiB; B measured, L and XL from their real shapes"
              " with B's tokenizers and activations, the transformer's scaled by width; total: all held = rest +"
              " model + tokenizers + the larger activation; one at a time = rest + model + the larger of the"
              " transformer's activations and the decode phase's peak, which holds one tokenizer at a time):")
        print("| size | dtype | tokenizers | model weights | tokenizer weights (one at a time: the largest) | "
              "activations: transformer | decode (one at a time: with its tokenizer) | python, torch, slack | "
              "total |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in sorted(rows, key=lambda x: (("B", "L", "XL").index(x["size"]), x["dtype"], x["low_memory"])):
            print(f"| {row['size']}{' (measured)' if row['measured'] else ' (accounted)'} | {row['dtype']} | "
                  f"{'one at a time' if row['low_memory'] else 'all held'} | {row['model']:.2f} | "
                  f"{row['tokenizers']:.2f} | {row['transformer']:.2f} | {row['decode']:.2f} | {row['rest']:.2f} | "
                  f"{row['total']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "least_memory": rows}, indent=1))


if __name__ == "__main__":
    main()
