"""The checks of a weights file's tensors against a model's state dict that every loader words alike: the model
loader (`model.checkpoint.adapt_state_dict`), every tokenizer folder (`tokenizers.base.checked_state`) and the
DiVAE UNet's file names (`tokenizers.ml4m.divae`). Each returns the body of a one-line message, or "" when the file
fits; the caller puts the file's name in front and raises its own error type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def wrong_kind(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
               expects: str = "the config") -> str:
    """The first tensor of ``state`` stored as integers where ``expected`` holds a floating tensor, or the reverse:
    a damaged or foreign file, never to be cast (`nn.loading.read_safetensors` keeps each tensor's kind). E.g.
    "tensor w is int32 in the file, the config expects a floating tensor"; "" when none is."""
    for key, t in state.items():
        if key in expected and t.is_floating_point() != expected[key].is_floating_point():
            kind = "a floating" if expected[key].is_floating_point() else "an integer"
            return f"tensor {key} is {str(t.dtype).removeprefix('torch.')} in the file, {expects} expects {kind} tensor"
    return ""


def missing_unexpected(missing: Sequence[str], unexpected: Sequence[str], *, show: int = 5) -> str:
    """"missing (2): a, b; unexpected (1): c", the first ``show`` names of each list (sorted by the caller), ""
    when both are empty."""
    parts = [f"missing ({len(missing)}): {', '.join(missing[:show])}"] if missing else []
    parts += [f"unexpected ({len(unexpected)}): {', '.join(unexpected[:show])}"] if unexpected else []
    return "; ".join(parts)
