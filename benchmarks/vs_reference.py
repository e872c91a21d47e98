"""polymodal against the reference implementation itself (apple/ml-4m's ``FM`` and ``GenerationSampler``), on the
same weights, the same batch and the same work, under the same torch, alternating runs.

The reference's ``FM`` is built from its own config dict (4M-21's layer choices: SwiGLU, no biases, separate
encoder/decoder modality embeddings) with random weights, saved in the official layout by its own
``save_pretrained`` (config.json + model.safetensors) and loaded in polymodal with
``polymodal.interop.ml4m.load_checkpoint``; every worker loads both from that one file. Work, each timed in one
subprocess that holds both implementations and alternates them (the order flips every round, so that other load
on the machine hits both alike), median of the timed rounds after one warmup round:

- ``train fp32`` / ``train bf16``: one training step (forward + loss + backward + gradient norm + AdamW +
  zero_grad) on a 4M-style masked batch (per sample, Dirichlet(1) shares of fixed input and target budgets over
  the domains). The reference steps the way its training loop does (``run_training_4m.py``: ``FM.forward`` with
  the token budgets, the loss scaler's ``get_grad_norm_``, ``torch.optim.AdamW`` over its ``create_optimizer``
  groups); polymodal the way its loop does (``train/loop.py``: the objective's ``loss``, ``clip_grad_norm``, the
  optimizer of ``build_optimizer`` with the default ``OptimConfig``): ``train.step.train_step`` where it exists,
  else the same calls written out. bf16 is CPU autocast on both sides (the reference's own
  ``torch.cuda.amp.autocast`` does nothing on a CPU). The check column compares the first losses (the reference's
  mean rescaled to the domains that have targets: it also counts the domains without any as 0). As the loop does at
  its start, polymodal's side first sets glibc's allocator to keep freed memory (``train.step.keep_freed_memory``:
  no page faults of each step's fresh gradients); the setting is process-wide, so the reference's timed steps run
  under it too (both sides alike; alone, the reference would fault its gradients in every step).
- ``caption``: RGB -> caption, greedy, ``--caption-tokens`` tokens (default 256: the start sentinel and 255
  decoded), batch 1; ``maskgit``: RGB -> tok_depth@224, 8 steps, greedy; ``maskgit cfg``: the same with
  guidance 2 on RGB; and the MaskGIT pair at ``--batches`` (8 and 32) and the caption at ``--caption-batches``.
  Greedy outputs are compared token for token ("same ids" column). Each in float32 and (``--gen-dtypes``) in
  bf16: the reference under ``torch.autocast("cpu", torch.bfloat16)`` (what its user can do: it has no other
  low-precision path), polymodal with its weights held in bfloat16 (``FourM.to``, ``generate --dtype bfloat16``);
  their check column adds the share of polymodal's bf16 ids equal to its float32 ids.

FLOPs: each side's own count of its first (untimed) run with ``torch.utils.flop_counter`` (matrix products and
attention, including the CPU flash-attention kernel that torch's counter misses); "% of peak" is that count per
second over the best 2048^3 matrix product of the same dtype and thread count, measured in the same run (before
and after; the higher is used). fp32 work against the fp32 peak, bf16 against the bf16 peak.

    POLYMODAL_REFERENCE=/work/ref python benchmarks/vs_reference.py                 # the issue's config (tiny)
    POLYMODAL_REFERENCE=/work/ref python benchmarks/vs_reference.py --quick         # ~2 min: dim 64, 2+2 layers
    POLYMODAL_REFERENCE=/work/ref python benchmarks/vs_reference.py --only train_bf16 --threads 1
    POLYMODAL_REFERENCE=/work/ref python benchmarks/vs_reference.py --profile train_bf16   # where the time goes
    POLYMODAL_REFERENCE=/work/ref python benchmarks/vs_reference.py --only gen batched --threads 1   # generation

On a machine that other jobs share, use ``--threads 1``: two OpenMP threads on two busy cores spin against the other
jobs (at load ~7-10 the caption and MaskGIT group had not finished after 35 min at two threads; at one thread it
took 5 min). The ratios stay fair (alternated); the fractions of peak are only as good as the load allows.

Run it in an environment that has both the reference's dependencies and polymodal (``pip install --no-deps -e .``);
without ``POLYMODAL_REFERENCE`` it prints why and exits 0. ``--domains bench`` uses benchmarks/train_step.py's
nine domains instead of the released 4M-21 set.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import record_function

# Run as a script, this folder comes first on sys.path, and its tokenizers.py would shadow the `tokenizers` package
# that both implementations import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ENV = "POLYMODAL_REFERENCE"
# The released 4M-21 models' domains (cfgs/default/4m/data/cc12m+coyo+c4/main/mix_mod21_*.yaml).
DOMAINS_4M21_IN = ("caption", "t5_caption", "det", "metadata", "rgb@224", "tok_rgb@224", "tok_normal@224",
                   "tok_depth@224", "tok_semseg@224", "tok_clip@224", "human_poses", "tok_dinov2@224",
                   "tok_dinov2_global", "tok_imagebind@224", "tok_imagebind_global", "tok_sam_edge@224",
                   "tok_canny_edge@224", "color_palette", "sam_instance")
DOMAINS = {
    "4m21": (DOMAINS_4M21_IN, tuple(n for n in DOMAINS_4M21_IN if n not in ("rgb@224", "t5_caption"))),
    "bench": (("rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_dinov2_global",
               "caption", "det", "metadata"),
              ("tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_dinov2_global", "caption",
               "det", "metadata")),
}
# Content lengths (tokens before span masking) of the sequence domains; others draw from (4, max_length).
SEQ_LENGTHS = {"caption": (8, 40), "det": (6, 100), "metadata": (10, 40), "t5_caption": (8, 40)}
DEPTH = "tok_depth@224"


# ------------------------------------------------------------------------------------------ the reference


class _ListSample:
    """``random`` for the reference's fm.py: it calls ``random.sample(dict.items(), k)``, which Python 3.11 refuses
    (a dict view is not a sequence); ``sample`` gets a list, everything else is the module's."""

    def __getattr__(self, name):
        return getattr(random, name)

    @staticmethod
    def sample(population, k, **kw):
        return random.sample(list(population), k, **kw)


def import_reference(path: str):
    """The reference's modules from a checkout at ``path``, with its two quirks fixed (see ../shared/REFERENCE.md):
    the Python 3.11 ``random.sample`` call, and image ``max_tokens`` left None until a data config sets them."""
    sys.path.insert(0, str(path))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice when `datasets` is missing
        import fourm.models.fm as fm
        import fourm.models.generate as gen
        from fourm.data.modality_info import MODALITY_INFO
        from fourm.utils import optim_factory
        from fourm.utils.native_scaler import get_grad_norm_
    fm.random = _ListSample()
    for info in MODALITY_INFO.values():
        if info.get("type") == "img" and info.get("max_tokens") is None and "input_size" in info:
            info["max_tokens"] = (info["input_size"] // info["patch_size"]) ** 2
    return argparse.Namespace(FM=fm.FM, gen=gen, MODALITY_INFO=MODALITY_INFO, optim_factory=optim_factory,
                              get_grad_norm_=get_grad_norm_, root=Path(path))


def reference_config(preset: str, domains: str) -> dict:
    from polymodal.config import MODEL_PRESETS

    dim, enc, dec, heads = MODEL_PRESETS[preset]
    d_in, d_out = DOMAINS[domains]
    return dict(dim=dim, encoder_depth=enc, decoder_depth=dec, num_heads=heads, mlp_ratio=4, act_layer="SiLU",
                gated_mlp=True, qkv_bias=False, proj_bias=False, mlp_bias=False, norm_bias=False, image_size=224,
                patch_size=16, share_modality_embeddings=False, domains_in=list(d_in), domains_out=list(d_out))


def load_pair(ref, folder: Path):
    """(reference FM, polymodal FourM), both holding the weights of ``folder``'s model.safetensors."""
    from safetensors.torch import load_model

    from polymodal.interop.ml4m import load_checkpoint

    config = json.loads((folder / "config.json").read_text())
    net = ref.FM(config)
    load_model(net, str(folder / "model.safetensors"))
    return net, load_checkpoint(folder)


# ----------------------------------------------------------------------------------------------- the batch


def _allot(budget: int, probs: list[float], caps: list[int]) -> list[int]:
    """Split ``budget`` by ``probs`` (floors, then largest remainders), never past ``caps``."""
    n = [min(int(p * budget), c) for p, c in zip(probs, caps)]
    while sum(n) < budget and any(a < c for a, c in zip(n, caps)):
        i = max((j for j in range(len(n)) if n[j] < caps[j]), key=lambda j: probs[j] * budget - n[j])
        n[i] += 1
    return n


def make_batch(config, batch_size: int, num_input: int, num_target: int, seed: int = 0):
    """A polymodal `Batch` of 4M training samples: per sample, Dirichlet(1) shares of ``num_input`` input and
    ``num_target`` target tokens over the domains; grids get random disjoint positions, a sequence its input span
    then its target span (opened by the sentinel [S_1]), as the reference's masking lays them out."""
    from polymodal.data.batch import Batch, ModalityTokens
    from polymodal.modalities import Kind

    g = torch.Generator().manual_seed(seed)
    names = list(dict.fromkeys(config.domains_in + config.domains_out))
    values, is_in, is_tg, avail = {}, {}, {}, {}
    for name in names:
        mod, b = config.modality(name), batch_size
        if mod.kind is Kind.PIXELS:
            values[name], length = torch.randn(b, mod.channels, *mod.image_size, generator=g), mod.num_tokens
        elif mod.kind is Kind.SEQUENCE_EMB:
            length = mod.max_length
            values[name] = torch.randn(b, length, mod.emb_dim, generator=g)
        elif mod.kind is Kind.SEQUENCE:
            length = mod.max_length
            values[name] = torch.randint(204, mod.vocab_size, (b, length), generator=g)  # past the special ids
        else:
            length = mod.num_tokens
            values[name] = torch.randint(0, mod.vocab_size, (b, length), generator=g)
        is_in[name] = torch.zeros(b, length, dtype=torch.bool)
        is_tg[name] = torch.zeros(b, length, dtype=torch.bool)

    def dirichlet(k: int) -> list[float]:
        e = torch.empty(k).exponential_(generator=g)
        return (e / e.sum()).tolist()

    d_in, d_out = list(config.domains_in), list(config.domains_out)
    for i in range(batch_size):
        for name in names:
            mod = config.modality(name)
            if mod.kind in (Kind.SEQUENCE, Kind.SEQUENCE_EMB):
                lo, hi = SEQ_LENGTHS.get(name, (4, mod.max_length // 2))
                avail[name] = int(torch.randint(lo, hi + 1, (1,), generator=g))
            else:
                avail[name] = mod.num_tokens
        n_in = dict(zip(d_in, _allot(num_input, dirichlet(len(d_in)), [avail[n] for n in d_in])))
        n_tg = dict(zip(d_out, _allot(num_target, dirichlet(len(d_out)), [avail[n] - n_in.get(n, 0) for n in d_out])))
        for name in names:
            k_in, k_tg, mod = n_in.get(name, 0), n_tg.get(name, 0), config.modality(name)
            if mod.kind in (Kind.SEQUENCE, Kind.SEQUENCE_EMB):
                is_in[name][i, :k_in] = True
                is_tg[name][i, k_in:k_in + k_tg] = True
                if k_tg:
                    values[name][i, k_in] = 5  # [S_1]
            else:
                perm = torch.randperm(mod.num_tokens, generator=g)
                is_in[name][i, perm[:k_in]] = True
                is_tg[name][i, perm[k_in:k_in + k_tg]] = True
    return Batch({n: ModalityTokens(values[n], is_in[n], is_tg[n]) for n in names})


def mod_dict_from_batch(batch, config) -> dict:
    """The batch in the reference's format: masks True = not used, and its compressed decoder attention mask
    (grids: the target count at the first target position; sequences: 1 at every target position)."""
    from polymodal.modalities import Kind

    out = {}
    for name, t in batch.items():
        kind, tgt = config.modality(name).kind, t.is_target
        if kind is Kind.IMAGE_TOKENS:
            dam = torch.zeros_like(tgt, dtype=torch.int32)
            has = tgt.any(dim=1)
            dam[has, tgt[has].int().argmax(dim=1)] = tgt[has].sum(dim=1, dtype=torch.int32)
        else:
            dam = tgt.int()
        vals = t.values.int() if kind is Kind.SEQUENCE else t.values
        out[name] = {"tensor": vals, "input_mask": ~t.is_input, "target_mask": ~tgt, "decoder_attention_mask": dam}
    return out


# ------------------------------------------------------------------------------------------------- the work


def _in_phase(fn, name: str):
    """``fn`` inside a profiler range "phase: name" (the profile's breakdown; nothing when not profiling)."""
    def wrapped(*args, **kwargs):
        with record_function(f"phase: {name}"):
            return fn(*args, **kwargs)
    return wrapped


def _mark_optimizer_phase(opt) -> None:
    opt.step = _in_phase(opt.step, "optimizer")
    opt.zero_grad = _in_phase(opt.zero_grad, "optimizer")


def train_steps(ref, net, poly, batch, *, num_input: int, num_target: int, dtype: str, sparse: bool = True):
    """(reference step, polymodal step): closures that run one training step each and return its loss."""
    from polymodal.config import ExperimentConfig, OptimConfig, TrainConfig
    from polymodal.train import optim as poly_optim
    from polymodal.train.objectives import make_objective
    from polymodal.train.parallelize import autocast

    lr = 1e-4  # a fixed rate on both sides (the schedules only change its value)
    mod_dict = mod_dict_from_batch(batch, poly.config)
    with contextlib.redirect_stdout(io.StringIO()):  # create_optimizer prints its parameter groups
        ref_opt = ref.optim_factory.create_optimizer(
            argparse.Namespace(opt="adamw", weight_decay=0.05, lr=lr, opt_eps=1e-8, opt_betas=[0.9, 0.95]), net)
    cpu = torch.device("cpu")

    def ref_step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"), record_function("phase: forward"):
            # the forward adds keys to the caller's dicts: pass copies
            loss, mod_loss = net({k: dict(v) for k, v in mod_dict.items()}, num_encoder_tokens=num_input,
                                 num_decoder_tokens=num_target, loss_type="mod")
        # Its mean runs over every output domain, a domain without targets counting 0; polymodal's over the domains
        # with targets. The check compares the latter (the per-domain losses are the same).
        value = loss.item() * len(mod_loss) / max(sum(bool(v.detach().any()) for v in mod_loss.values()), 1)
        with record_function("phase: backward"):
            loss.backward()
        with record_function("phase: optimizer"):
            ref.get_grad_norm_(net.parameters())  # its loss scaler computes the norm every step (for logging)
            ref_opt.step()
            ref_opt.zero_grad()
        return value

    # polymodal: the loop's own step function where it exists (train/step.py), else what train/loop.py ran for one
    # step of one process before it did (the objective's loss, clip_grad_norm, the optimizer).
    cfg = ExperimentConfig(objective="fourm", model=poly.config, optim=OptimConfig(sparse_embeddings=sparse),
                           train=TrainConfig(precision=dtype))
    objective = make_objective(cfg)
    poly_opt = poly_optim.build_optimizer(poly, cfg.optim, 256)
    poly_optim.set_lr(poly_opt, lr)
    poly.train()
    _mark_optimizer_phase(poly_opt)
    try:
        from polymodal.train import step as step_module
    except ImportError:
        step_module = None
    if hasattr(step_module, "keep_freed_memory"):  # what train/loop.py does at the start of a CPU run
        step_module.keep_freed_memory()

    def poly_step(batch=batch) -> float:
        stats = objective.step_stats([batch])
        if step_module is not None:
            out = step_module.train_step(poly, [batch], poly_opt, objective, cfg, stats=stats, device=cpu)
            return objective.summarize(out.sums.cpu(), stats)["loss"]
        with autocast(cpu, dtype):
            with record_function("phase: forward"):
                loss, sums = objective.loss(poly, batch, stats, 1, cpu)
            with record_function("phase: backward"):
                loss.backward()
        value = objective.summarize(sums, stats)["loss"]
        params = [p for p in poly.parameters() if p.grad is not None]
        poly_optim.clip_grad_norm(params, cfg.optim.clip_grad)
        poly_opt.step()
        poly_opt.zero_grad(set_to_none=True)
        return value

    if step_module is not None:  # the profile's phases: the loss is the forward pass; clipping is the optimizer's
        objective.loss = _in_phase(objective.loss, "forward")
        # clipping is the optimizer's: train_step calls clip_and_step (clipping, then optimizer.step, which is then
        # not marked again: nested ranges of one name would count twice); older polymodal called clip_grad_norm
        if hasattr(step_module, "clip_and_step"):
            step_module.clip_and_step = _in_phase(step_module.clip_and_step, "optimizer")
            del poly_opt.step  # the class's own step again
        elif hasattr(step_module, "clip_grad_norm"):
            step_module.clip_grad_norm = _in_phase(step_module.clip_grad_norm, "optimizer")
    net.train()
    poly_step.optimizer = poly_opt
    return ref_step, poly_step


def active_rows(opt) -> str:
    """How much of the embedding tables a row-sparse optimizer steps: rows ever looked up over all rows of the
    tables that have had a gradient, and the tables already past ``dense_above`` (stepped dense)."""
    flags = [st["active"] for st in opt.state.values() if "active" in st]
    if not flags:
        return "dense tables"
    dense = sum(bool(f.float().mean() > getattr(opt, "dense_above", 0.5)) for f in flags)
    return (f"{sum(int(f.sum()) for f in flags) / sum(f.numel() for f in flags):.1%} of table rows active, "
            f"{dense}/{len(flags)} tables dense")


def generation_work(ref, net, poly, kind: str, batch_size: int, *, caption_tokens: int = 256, steps: int = 8,
                    dtype: str = "fp32"):
    """(reference run, polymodal run) of one generation task on the same RGB batch; each returns the ids (B, N).
    ``dtype`` "bf16": the reference under CPU autocast (what its user can do), polymodal with its weights held in
    bfloat16 (``FourM.to``, what ``generate --dtype bfloat16`` loads): pass a bfloat16 copy as ``poly``."""
    from polymodal.generation import Plan, Step, generate

    rgb = torch.randn(batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    mi, gen = ref.MODALITY_INFO, ref.gen
    sampler = gen.GenerationSampler(net)
    from tokenizers import Tokenizer

    text_tok = Tokenizer.from_file(str(ref.root / "fourm/utils/tokenizer/trained/text_tokenizer_4m_wordpiece_30k.json"))
    if kind == "caption":
        target, n, scheme, scale = "caption", caption_tokens, "autoregressive", 1.0
        plan = Plan((Step("caption", "autoregressive", temperature=0.0, max_tokens=caption_tokens - 1),))
    else:
        target, n, scheme, scale = DEPTH, 196, "maskgit", 2.0 if kind == "maskgit cfg" else 1.0
        field = "num_steps" if "num_steps" in {f.name for f in dataclasses.fields(Step)} else "steps"  # renamed
        plan = Plan((Step(DEPTH, "maskgit", temperature=0.0, guidance_scale=scale, **{field: steps}),))
    schedule = gen.build_chained_generation_schedules(
        cond_domains=["rgb@224"], target_domains=[target], tokens_per_target=[n], autoregression_schemes=[scheme],
        decoding_steps=[steps], token_decoding_schedules=["cosine"], temps=[0.0], temp_schedules=["constant"],
        cfg_scales=[scale], cfg_schedules=["constant"], modality_info=mi)

    def ref_run() -> torch.Tensor:
        md = {"rgb@224": {"tensor": rgb}}
        md = gen.init_full_input_modality(md, mi, "rgb@224", "cpu")
        md = gen.init_empty_target_modality(md, mi, target, batch_size, n, "cpu")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = sampler.generate(md, schedule, text_tokenizer=text_tok, seed=0)
        return out[target]["tensor"].long()

    def poly_run() -> torch.Tensor:
        with torch.no_grad():
            return generate(poly, {"rgb@224": rgb}, plan, seed=0)[target].long()

    net.eval(), poly.eval()
    return ref_run, poly_run


# ------------------------------------------------------------------------------------------- measuring


def _flash_cpu_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _flash_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def _onednn_linear(x, weight, *args, out_shape=None, **kwargs) -> int:
    """oneDNN's linear (polymodal.nn.linear's float32 kernel): 2 * rows * in * out."""
    rows = 1
    for d in x[:-1]:
        rows *= d
    return 2 * rows * x[-1] * weight[0]


def count_flops(fn) -> tuple[object, int]:
    """(fn's result, the FLOPs of its matrix products and attention). torch's counter has no formula for the CPU
    flash-attention kernels that ``scaled_dot_product_attention`` runs on a CPU: they are added here."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu_fwd,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_bwd}
    if getattr(torch.ops.mkldnn, "_linear_pointwise", None) is not None:
        mapping[torch.ops.mkldnn._linear_pointwise] = _onednn_linear
    mode = FlopCounterMode(display=False, custom_mapping=mapping)
    with mode:
        out = fn()
    return out, mode.get_total_flops()


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the fastest of ``reps`` (n x n) @ (n x n) products in ``dtype`` at the current thread count, by
    the faster of torch's ``@`` and oneDNN's linear kernel (on AMD Zen 5 ``@`` in float32 is MKL at about half of
    what oneDNN reaches: polymodal.nn.linear)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    bt = b.t()
    kernels = [lambda: a @ b]
    if getattr(torch.ops.mkldnn, "_linear_pointwise", None) is not None and torch.backends.mkldnn.is_available():
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], ""))
    best = float("inf")
    for f in kernels:
        for _ in range(2):
            f()
        for _ in range(reps):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def alternate(ref_fn, poly_fn, rounds: int) -> dict:
    """One untimed round (FLOPs counted, outputs kept), then ``rounds`` timed rounds, the order flipping each
    round. Returns each side's times, FLOPs and first output."""
    out = {}
    for side, fn in (("reference", ref_fn), ("polymodal", poly_fn)):
        result, flops = count_flops(fn)
        out[side] = {"s": [], "flops": flops, "result": result}
    for r in range(rounds):
        order = (("reference", ref_fn), ("polymodal", poly_fn))
        for side, fn in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            fn()
            out[side]["s"].append(time.perf_counter() - t)
    return out


def _fp32_kernel() -> str:
    from polymodal.nn.linear import backend

    return backend()


def run_worker(spec: dict) -> dict:
    """One group of work in a fresh process (the memory of one group never inflates another's)."""
    torch.set_num_threads(spec["threads"])
    _fp32_kernel()  # the float32 kernel choice times a few products: before any FLOPs are counted, once per process
    random.seed(0)
    torch.manual_seed(0)
    ref = import_reference(spec["reference"])
    net, poly = load_pair(ref, Path(spec["folder"]))
    rows = []
    if spec["group"].startswith("train"):
        dtype = spec["group"].split()[1]
        batch = make_batch(poly.config, spec["batch"], spec["num_input"], spec["num_target"])
        ref_fn, poly_fn = train_steps(ref, net, poly, batch, num_input=spec["num_input"],
                                      num_target=spec["num_target"], dtype=dtype)
        res = alternate(ref_fn, poly_fn, spec["train_steps"])
        note = (f"first loss {res['reference']['result']:.5f} vs {res['polymodal']['result']:.5f}; "
                f"{active_rows(poly_fn.optimizer)}")
        rows.append(_row(f"train {dtype} (batch {spec['batch']})", dtype, res, note))
        if spec.get("dense_tables"):
            # the ablation: polymodal's step with dense tables (optim.sparse_embeddings=false), fresh weights
            from polymodal.interop.ml4m import load_checkpoint

            _, dense_fn = train_steps(ref, net, load_checkpoint(Path(spec["folder"])), batch,
                                      num_input=spec["num_input"], num_target=spec["num_target"], dtype=dtype,
                                      sparse=False)
            res = alternate(ref_fn, dense_fn, spec["train_steps"])
            rows.append(_row(f"train {dtype}, dense tables (optim.sparse_embeddings=false)", dtype, res,
                             f"polymodal's first loss {res['polymodal']['result']:.5f}"))
        if spec.get("warm_batches"):
            # One batch repeated keeps the set of looked-up rows small, which flatters row-sparse tables. Here
            # polymodal's optimizer first steps through other batches (uniform random ids: the most rows per step,
            # the pessimistic case); the reference's dense AdamW costs the same whatever it has seen.
            for seed in range(1, spec["warm_batches"] + 1):
                poly_fn(make_batch(poly.config, spec["batch"], spec["num_input"], spec["num_target"], seed=seed))
            res = alternate(ref_fn, poly_fn, spec["train_steps"])
            rows.append(_row(f"train {dtype}, after {spec['warm_batches']} other batches", dtype, res,
                             active_rows(poly_fn.optimizer)))
        return {"rows": rows}
    fp32_ids, models = {}, {"fp32": poly}
    for kind, b, dtype in spec["works"]:
        if dtype not in models:  # polymodal's bfloat16 weights: a cast copy, as `generate --dtype bfloat16` holds
            models[dtype] = copy.deepcopy(poly).to(torch.bfloat16).eval()
        ref_fn, poly_fn = generation_work(ref, net, models[dtype], kind, b, caption_tokens=spec["caption_tokens"],
                                          dtype=dtype)
        res = alternate(ref_fn, poly_fn, spec["repeats"])
        a, p = res["reference"]["result"], res["polymodal"]["result"]
        label = f"{kind} ({spec['caption_tokens']} tok)" if kind == "caption" else f"{kind} 8 steps"
        note = same_ids(a, p, sequence=kind == "caption")
        if dtype == "fp32":
            fp32_ids[kind, b] = p
        elif (kind, b) in fp32_ids:  # how far bfloat16 moves polymodal's own greedy ids
            note += f"; vs polymodal fp32: {agreement(fp32_ids[kind, b], p, sequence=kind == 'caption')}"
        rows.append(_row(f"{label}, batch {b}{', bf16' if dtype == 'bf16' else ''}", dtype, res, note))
    return {"rows": rows}


def _row(work: str, dtype: str, res: dict, note: str) -> dict:
    return {"work": work, "dtype": dtype, "note": note,
            **{side: {"s": res[side]["s"], "flops": res[side]["flops"]} for side in ("reference", "polymodal")}}


def same_ids(a: torch.Tensor, b: torch.Tensor, *, sequence: bool) -> str:
    """'yes' when both outputs hold the same ids (sequences: up to their [PAD] ids), else how many differ."""
    if sequence:
        rows = [x[x != 0].tolist() == y[y != 0].tolist() for x, y in zip(a, b)]
        lengths = sorted({int((x != 0).sum()) for x in a})  # the reference's merged ids: decoded tokens per sample
        n = f"{lengths[0]}" + (f"-{lengths[-1]}" if len(lengths) > 1 else "")
        return f"yes ({n} ids)" if all(rows) else f"no ({rows.count(False)}/{len(rows)} samples differ)"
    if a.shape != b.shape:
        return f"no (shapes {tuple(a.shape)} vs {tuple(b.shape)})"
    return "yes" if torch.equal(a, b) else f"no ({int((a != b).sum())}/{a.numel()} ids differ)"


def agreement(a: torch.Tensor, b: torch.Tensor, *, sequence: bool) -> str:
    """The share of ids that two greedy outputs hold in common: image tokens position by position; sequences up
    to the first difference of each sample (after it, a different history decodes a different text)."""
    if not sequence:
        return f"{100 * float((a == b).float().mean()):.1f}% same ids"
    common = []
    for x, y in zip(a.tolist(), b.tolist()):
        n = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
        common.append(n / max(len(x), 1))
    return f"{100 * sum(common) / len(common):.1f}% of ids before the first difference"


def in_subprocess(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['group']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Where the time goes: an op's self time inside the optimizer phase (gradient norm, AdamW, zero_grad) counts as
# "optimizer"; elsewhere it falls in the first category whose pattern its name contains.
CATEGORIES = (
    ("casts and copies", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous")),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_mkl", "onednn", "mkldnn")),
    ("attention kernels", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::masked_fill")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss", "aten::logsumexp")),
    ("indexing", ("index", "gather", "scatter", "masked_select", "nonzero", "embedding", "aten::where", "argsort",
                  "aten::sort", "aten::cat", "aten::stack")),
)


def _phase(event) -> str | None:
    """The training phase (record_function "phase: ...") that encloses a profiler event, if any."""
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith("phase: "):
        parent = parent.cpu_parent
    return parent.name[7:] if parent is not None else None


def profile(spec: dict, work: str, runs: int) -> None:
    """torch.profiler over ``runs`` runs of each side of one work (after two warmup runs): wall time, op time by
    phase and category, time outside ops, and the 15 ops with the most self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(spec["threads"])
    _fp32_kernel()  # the float32 kernel choice times a few products: before any FLOPs are counted, once per process
    random.seed(0)
    torch.manual_seed(0)
    ref = import_reference(spec["reference"])
    net, poly = load_pair(ref, Path(spec["folder"]))
    if work.startswith("train"):
        batch = make_batch(poly.config, spec["batch"], spec["num_input"], spec["num_target"])
        fns = train_steps(ref, net, poly, batch, num_input=spec["num_input"], num_target=spec["num_target"],
                          dtype=work.split("_")[1])
    else:
        dtype = "bf16" if work.endswith("_bf16") else "fp32"
        kind = "maskgit cfg" if "cfg" in work else "maskgit"
        model = copy.deepcopy(poly).to(torch.bfloat16).eval() if dtype == "bf16" else poly
        fns = generation_work(ref, net, model, kind, spec["batch"], dtype=dtype)
    for side, fn in zip(("reference", "polymodal"), fns):
        fn(), fn()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(runs):
                fn()
            wall = (time.perf_counter() - t) / runs
        events = [e for e in prof.key_averages() if not e.key.startswith("phase: ")]
        phases = {e.key[7:]: e.cpu_time_total / runs / 1e6 for e in prof.key_averages() if e.key.startswith("phase")}
        in_ops = sum(e.self_cpu_time_total for e in events) / runs / 1e6
        cats = dict.fromkeys([c for c, _ in CATEGORIES] + ["optimizer", "other ops"], 0.0)
        for e in prof.events():
            if e.name.startswith("phase: "):
                continue
            cat = "optimizer" if _phase(e) == "optimizer" else \
                next((c for c, pats in CATEGORIES if any(p in e.name for p in pats)), "other ops")
            cats[cat] += e.self_cpu_time_total / runs / 1e6
        print(f"\n== {side} {work}: {wall:.3f} s per run under the profiler; ops' self time {in_ops:.3f} s, outside "
              f"ops (Python, dispatch) {wall - in_ops:.3f} s; {sum(e.count for e in events) / runs:,.0f} op calls")
        if phases:
            if "backward" not in phases:  # train_step's backward pass is not marked: what the others leave
                phases["backward and the rest"] = wall - sum(phases.values())
            print("   phases (total time): " + ", ".join(f"{k} {v:.3f} s" for k, v in phases.items()))
        print("   self time by category: " + ", ".join(f"{k} {v:.3f} s" for k, v in cats.items() if v))
        print(f"   {'op':48} {'calls':>7} {'self s':>8} {'% wall':>7}")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
            sec = e.self_cpu_time_total / runs / 1e6
            print(f"   {e.key[:48]:48} {e.count / runs:7.0f} {sec:8.3f} {100 * sec / wall:6.1f}%")


# ------------------------------------------------------------------------------------------------ the table


def table(rows: list[dict], peaks: dict[str, float]) -> str:
    head = ("work", "reference s", "polymodal s", "ratio", "ref % of peak", "polymodal % of peak",
            "GFLOP ref / poly", "check")
    lines = []
    for r in rows:
        t_ref, t_poly = statistics.median(r["reference"]["s"]), statistics.median(r["polymodal"]["s"])
        f_ref, f_poly = r["reference"]["flops"], r["polymodal"]["flops"]
        peak = peaks[r["dtype"]]
        lines.append((r["work"], f"{t_ref:.3f}", f"{t_poly:.3f}", f"{t_ref / t_poly:.2f}x",
                      f"{100 * f_ref / t_ref / peak:.1f}%", f"{100 * f_poly / t_poly / peak:.1f}%",
                      f"{f_ref / 1e9:.1f} / {f_poly / 1e9:.1f}", r["note"]))
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="polymodal.config.MODEL_PRESETS size (tiny: dim 384, 6+6)")
    p.add_argument("--domains", default="4m21", choices=sorted(DOMAINS))
    p.add_argument("--batch", type=int, default=8, help="training batch")
    p.add_argument("--num-input", type=int, default=128)
    p.add_argument("--num-target", type=int, default=128)
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps per side")
    p.add_argument("--warm-batches", type=int, default=200,
                   help="the training rows again after polymodal's optimizer saw this many other batches (0: not)")
    p.add_argument("--dense-tables", action="store_true",
                   help="the training rows also with polymodal's dense tables (optim.sparse_embeddings=false)")
    p.add_argument("--repeats", type=int, default=3, help="timed generation runs per side")
    p.add_argument("--caption-tokens", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="*", default=[8, 32], help="batched MaskGIT (with and without cfg)")
    p.add_argument("--caption-batches", type=int, nargs="*", default=[8], help="batched caption decoding")
    p.add_argument("--only", nargs="*", default=None, help="groups to run: train_fp32 train_bf16 gen batched")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--quick", action="store_true", help="preset test, batch 4, 32 caption tokens, batch 8 only")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--gen-dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="generation rows: fp32, and bf16 (the reference under autocast, polymodal's weights bf16)")
    p.add_argument("--profile", choices=["train_fp32", "train_bf16", "maskgit", "maskgit_cfg", "maskgit_bf16",
                                         "maskgit_cfg_bf16"],
                   help="instead of timing: profile one work of each side (--profile-batch for MaskGIT's batch)")
    p.add_argument("--profile-runs", type=int, default=2)
    p.add_argument("--profile-batch", type=int, default=1)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    path = os.environ.get(ENV)
    if not path or not (Path(path) / "fourm" / "models" / "fm.py").is_file():
        print(f"vs_reference: skipped: set {ENV} to a checkout of apple/ml-4m (got {path!r})")
        return
    if args.quick:
        args.preset, args.batch, args.caption_tokens, args.batches = "test", 4, 32, [8]
        args.train_steps, args.repeats, args.warm_batches = 3, 2, 3
    torch.set_num_threads(args.threads)
    ref = import_reference(path)
    load0 = os.getloadavg()
    peaks0 = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; polymodal's float32 linear kernel: {_fp32_kernel()}; "
          f"preset {args.preset}, domains {args.domains}; "
          f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    groups = args.only or ["train_fp32", "train_bf16", "gen", "batched"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ref-model"
        torch.manual_seed(0)
        net = ref.FM(reference_config(args.preset, args.domains))
        net.save_pretrained(str(folder))  # the official layout, by the reference's own hub mixin
        n_params = sum(q.numel() for q in net.parameters())
        del net
        base = dict(reference=path, folder=str(folder), threads=args.threads, batch=args.batch,
                    num_input=args.num_input, num_target=args.num_target, train_steps=args.train_steps,
                    repeats=args.repeats, caption_tokens=args.caption_tokens, warm_batches=args.warm_batches,
                    dense_tables=args.dense_tables)
        if args.profile:
            batch = args.batch if args.profile.startswith("train") else args.profile_batch
            profile({**base, "batch": batch}, args.profile, args.profile_runs)
            return
        specs = []
        for g in groups:
            if g.startswith("train_"):
                specs.append({**base, "group": g.replace("_", " ")})
            elif g == "gen":
                works = [(k, 1, d) for d in args.gen_dtypes for k in ("caption", "maskgit", "maskgit cfg")]
                specs.append({**base, "group": g, "works": works})
            elif g == "batched":
                works = [(k, b, d) for d in args.gen_dtypes for b in args.batches for k in ("maskgit", "maskgit cfg")]
                works += [("caption", b, d) for d in args.gen_dtypes for b in args.caption_batches]
                specs.append({**base, "group": g, "works": works})
            else:
                p.error(f"--only: unknown group {g!r}; choose from train_fp32 train_bf16 gen batched")
        rows = []
        for spec in specs:
            t = time.perf_counter()
            rows += in_subprocess(spec)["rows"]
            print(f"  {spec['group']}: {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)
            print("\n".join("    " + line for line in table(rows, peaks0).splitlines()[2:]), flush=True)  # so far
    peaks1 = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    peaks = {k: max(peaks0[k], peaks1[k]) for k in peaks0}
    load1 = os.getloadavg()
    print(f"\n{n_params / 1e6:.1f}M parameters; matmul peak (2048^3, {args.threads} threads) fp32 "
          f"{peaks0['fp32'] / 1e9:.0f} / {peaks1['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks0['bf16'] / 1e9:.0f} / "
          f"{peaks1['bf16'] / 1e9:.0f} GFLOP/s (before / after); load average at the end {load1[0]:.2f} "
          f"{load1[1]:.2f} {load1[2]:.2f}; medians of {args.train_steps} steps / {args.repeats} runs\n")
    print(table(rows, peaks))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "peaks": [peaks0, peaks1], "load": [load0, load1],
                                               "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
