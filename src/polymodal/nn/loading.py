"""Weights loaded straight into the dtype asked for, with no float32 copy of the model on the way.

The plain way, ``model = Cls(cfg); model.load_state_dict(load_file(f)); model.to(torch.bfloat16)``, holds the
randomly initialized float32 model and the file's tensors at once (twice the float32 weights: 6.6 GB for 4M-21 B,
whose float32 weights are 3.4 GB), then casts. Here instead:

1. `parameters_on_meta`: the model is built with its parameters on the meta device (shape and dtype, no memory,
   no initialization); buffers stay real, because some are computed at construction (sin-cos tables, pixel means)
   and are not in the file.
2. `read_safetensors`: the file is read one tensor at a time, each cast to its target dtype as soon as it is read,
   so at most one tensor exists in the file's dtype besides the result.
3. `assign_state`: the tensors become the parameters (``load_state_dict(assign=True)``), parameters that the model
   shares (tied tables, a shared modality embedding) are shared again, and the buffers not in the file are cast.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

# safetensors' dtype names -> torch's (the ones read here; others through safetensors' own reader)
_FILE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}
_LOCK = threading.RLock()  # one patched construction at a time (the patch is on the class)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside (by this thread) hold their parameters on the meta device; buffers stay real.

    Each parameter is created by its module's constructor as usual and moved to meta as it is registered, so
    initializers that run after registration (``reset_parameters``, ``apply(init)``) touch no memory; the largest
    transient is one parameter's uninitialized allocation. A parameter already on meta (one module handing its
    parameter to another) is kept as it is, so that sharing survives."""
    original = nn.Module.register_parameter
    owner = threading.get_ident()

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta" and threading.get_ident() == owner:
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    with _LOCK:
        nn.Module.register_parameter = register_parameter
        try:
            yield
        finally:
            nn.Module.register_parameter = original


def check_dtype(dtype: torch.dtype | None) -> None:
    """A ValueError unless ``dtype`` is None or a floating dtype (what the ``dtype=`` of every loader casts to)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype={dtype!r}: weights load in a floating dtype (torch.float32, torch.bfloat16, ...)")


def target_dtypes(model: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.dtype]:
    """State-dict name -> the dtype its tensor loads in: ``dtype`` for floating tensors when given, else the
    model's own (what ``load_state_dict`` into the model would have made of the file's tensor)."""
    out = {}
    for key, t in model.state_dict(keep_vars=True).items():
        out[key] = dtype if dtype is not None and t.dtype.is_floating_point else t.dtype
    return out


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, from its header (nothing read)."""
    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def read_safetensors(path: str | Path, dtypes: dict[str, torch.dtype] | None = None, *, device: str = "cpu",
                     keys: Iterable[str] | None = None, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, each cast to ``dtypes[name]`` (names not in it: floating tensors to
    ``dtype`` when given, others keep the file's dtype) right after it is read: the file's float32 version of a
    tensor is gone before the next one is read. A tensor is never cast between integer and floating dtypes (integers
    where a model holds a weight mean a damaged or foreign file): it keeps the file's dtype, for the caller's check
    against the model to name it.

    Read with plain file reads into fresh tensors, not through a memory map of the file: a map puts every page of
    the file read so far into the process's resident memory until it closes (the whole float32 file, for a load in
    bfloat16). The header is checked by safetensors itself first (a truncated or damaged file is its error).
    ``device="meta"``: tensors of the header's shapes in the target dtypes, nothing read (a load that checks a
    folder's fit without holding its weights: `pipeline.official`)."""
    dtypes = dtypes or {}
    with safe_open(str(path), "pt") as f:  # validates the header against the file (offsets, size)
        names = list(f.keys()) if keys is None else list(keys)
        with open(path, "rb") as raw:
            start = 8 + int.from_bytes(raw.read(8), "little")
            raw.seek(8)
            header = json.loads(raw.read(start - 8))
            out, stage = {}, None
            for k in names:
                info = header[k]
                kind = _FILE_DTYPES.get(info["dtype"])
                want = dtypes.get(k)
                if kind is None:  # a dtype this reader does not know (float8 ...): safetensors reads it
                    t = f.get_tensor(k)
                    want = want if want is not None and want.is_floating_point == t.is_floating_point() else None
                    want = want or (dtype if dtype is not None and t.is_floating_point() else t.dtype)
                    out[k] = t.to(device=device, dtype=want)
                    continue
                want = want if want is not None and want.is_floating_point == kind.is_floating_point else None
                want = want or (dtype if dtype is not None and kind.is_floating_point else kind)
                if device == "meta":  # shapes and dtypes only (a fit check): not a byte of the tensors is read
                    out[k] = torch.empty(info["shape"], dtype=want, device="meta")
                    continue
                begin, end = info["data_offsets"]
                if want == kind:  # read straight into the result
                    t = torch.empty(info["shape"], dtype=kind)
                    buf = t.reshape(-1).view(torch.uint8)
                else:  # through one staging buffer for every cast tensor: freed file-dtype copies would leave the
                    # allocator's heap fragmented (a bf16 load of a 1.07 GB float32 DiVAE kept 0.16 GB more)
                    if stage is None:
                        stage = torch.empty(max(_nbytes(header[n]) for n in names if n in header), dtype=torch.uint8)
                    buf = stage[:end - begin]
                raw.seek(start + begin)
                if end > begin and raw.readinto(buf.numpy()) != end - begin:
                    raise ValueError(f"{path}: tensor {k} ends past the end of the file")
                if want == kind:
                    out[k] = t if device == "cpu" else t.to(device)
                else:
                    out[k] = buf.view(kind).reshape(info["shape"]).to(device=device, dtype=want)
    return out


def _nbytes(info: dict) -> int:
    begin, end = info["data_offsets"]
    return end - begin


def shared_parameters(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that are one parameter (tied tables, shared embeddings), two or more names each."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def assign_state(model: nn.Module, state: dict[str, torch.Tensor], *, strict: bool = True,
                 dtype: torch.dtype | None = None) -> nn.Module:
    """Make ``state``'s tensors the model's (no copy): the end of a load that began with `parameters_on_meta`.

    Shared parameters are shared again afterwards (``assign`` would give each name its own parameter), floating
    buffers not in ``state`` are cast to ``dtype``, and a parameter left on meta (not in ``state``) is a
    ValueError naming it. Returns ``model``."""
    groups = shared_parameters(model)
    model.load_state_dict(state, strict=strict, assign=True)
    for names in groups:
        first = model.get_parameter(names[0])
        for name in names[1:]:
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, attr, first)
    # A name counts as given when it, or a name sharing its parameter, is in ``state``: a state read onto the
    # meta device (`read_safetensors(device="meta")`, a check of shapes) leaves every parameter on meta, rightly.
    given = set(state)
    for names in groups:
        given.update(names if given.intersection(names) else ())
    left = [n for n, p in model.named_parameters() if p.device.type == "meta" and n not in given]
    if left:
        raise ValueError(f"parameters not in the weights: {', '.join(left[:5])}" + (" ..." if len(left) > 5 else ""))
    if dtype is not None:
        for module in model.modules():
            for name, b in module.named_buffers(recurse=False):
                if b.dtype.is_floating_point and b.dtype != dtype:
                    module._buffers[name] = b.to(dtype)
    return model

