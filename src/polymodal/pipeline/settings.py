"""The one rule for the generation settings a person gives: `polymodal generate` (and `retrieve`), the web server's
requests and `Pipeline.plan` all check them here, so a value refused by one is refused by all, with the same line.

=============  ===========================  ==================================================================
setting        allowed                      why
=============  ===========================  ==================================================================
steps          whole number, 1 to N         N: the tokens of the target (`check_steps`, when the target is known);
                                            every step commits at least one token (`generation.sampling`)
temperature    number, 0 to 5               0 is greedy; past 5 a softmax over thousands of codes is nearly flat
                                            (4M-21's demo goes up to 5, for its CLIP tokens)
guidance       number, 0 to 10              ml-4m's ``u + s * (c - u)``: 0 ignores the conditions, 1 is none,
                                            4M-21's demo uses 2 to 3; a negative scale steers away from the
                                            inputs, which no task asks for
seed           whole number, 0 to 2**31-1   what every seeding API takes (generation adds the step index)
k              whole number, 1 to 20        gallery items a retrieval returns, one picture each
=============  ===========================  ==================================================================

NaN and infinities are refused everywhere; booleans are not numbers. Values may come as text (a form field, JSON
``"3"``); a whole-number setting takes ``3.0`` but not ``2.5``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from .inputs import PipelineError

RANGES: dict[str, tuple[float, float | None]] = {"steps": (1, None), "temperature": (0.0, 5.0),
                                                 "guidance": (0.0, 10.0), "seed": (0, 2**31 - 1), "k": (1, 20)}
WHOLE = frozenset({"steps", "seed", "k"})


class SettingError(PipelineError):
    """A setting outside its range; the message names the setting, what is allowed and the value."""


def allowed(key: str) -> str:
    """What setting ``key`` takes, in words ("a number from 0 to 5")."""
    lo, hi = RANGES[key]
    kind, show = ("a whole number", lambda v: str(int(v))) if key in WHOLE else ("a number", lambda v: f"{v:g}")
    return f"{kind} of at least {show(lo)}" if hi is None else f"{kind} from {show(lo)} to {show(hi)}"


def check(key: str, value: Any, *, label: str | None = None) -> int | float:
    """``value`` of setting ``key`` (`RANGES`) as an int (whole-number settings) or a float; a `SettingError`
    "LABEL: must be ..., got VALUE" (``label`` defaults to ``key``; the command line passes ``--key``)."""
    x: float | int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        x = int(value)
    elif isinstance(value, (numbers.Real, str)) and not isinstance(value, bool):
        try:
            x = float(value)
        except ValueError:
            x = None
        if x is not None and key in WHOLE and math.isfinite(x) and x.is_integer():
            x = int(x)
    lo, hi = RANGES[key]
    ok = x is not None and (isinstance(x, int) or math.isfinite(x)) and lo <= x and (hi is None or x <= hi) and (
        key not in WHOLE or isinstance(x, int))
    if not ok:
        raise SettingError(f"{label or key}: must be {allowed(key)}, got {value!r:.40}")
    return x if key in WHOLE else float(x)


def check_settings(*, prefix: str = "", **values: Any) -> dict[str, int | float]:
    """Every given (not None) setting checked by `check`; ``prefix`` is put before each name in a message
    (``"--"`` on the command line)."""
    return {k: check(k, v, label=prefix + k) for k, v in values.items() if v is not None}


def check_steps(steps: int, tokens: int, target: str) -> None:
    """``steps`` for a target of ``tokens`` tokens: 1 to ``tokens`` (one token a step at most steps)."""
    if not 1 <= steps <= tokens:
        raise SettingError(f"{target}: {steps} steps for its {tokens} tokens is too many (steps: must be a whole "
                           f"number from 1 to {tokens})" if steps > tokens else
                           f"steps: must be {allowed('steps')}, got {steps}")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a `torch.device` this machine has; a `SettingError` naming it otherwise (torch's own error
    comes only when the model moves, as a traceback listing two dozen device types, or an AssertionError)."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise SettingError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise SettingError(f"device {str(device)!r}: this machine has no CUDA device; use cpu")
        if d.index is not None and d.index >= n:
            raise SettingError(f"device {str(device)!r}: this machine has {n} CUDA device{'s' if n > 1 else ''} "
                               f"(cuda:0 to cuda:{n - 1})")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError(f"device {str(device)!r}: this machine has no MPS device; use cpu")
    return d
