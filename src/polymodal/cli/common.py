"""What every command group of the `polymodal` command shares: the one-line refusal (`_fail`), notices, the
thread count, ``--from MODALITY=VALUE`` and the help texts several commands repeat word for word."""

from __future__ import annotations

import sys


def _fail(command: str, e: BaseException) -> int:
    """Bad input: one line on stderr, exit code 2 (no traceback)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"polymodal {command}: {msg}", file=sys.stderr)
    return 2


def _notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _parse_from(items: list[str] | None) -> dict[str, str]:
    """``--from MODALITY=VALUE`` arguments as a dict; a ValueError names a malformed one, or a modality given
    twice (a dict would keep only the last; names that reach one domain, rgb and tok_rgb@64, are the pipeline's
    `resolve_inputs` to refuse)."""
    inputs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--from {item!r} is not of the form MODALITY=VALUE")
        if key in inputs:
            raise ValueError(f"--from {key} is given twice ({key}={inputs[key]!r} and {key}={value!r}); give each "
                             "input once")
        inputs[key] = value
    return inputs


# Generation runs one token (or one small step) at a time: on a CPU, thread hand-offs over such small products cost
# more than they save (5x slower with 2 threads than with 1 on the shared 2-core machine).
_THREADS_HELP = "CPU threads for torch (default 1: fastest for step-by-step decoding on a CPU)"
_TOKENIZER_HELP = ("extra tokenizer folders; for a released 4M model (EPFL-VILAB/4M-21_XL, ...) DOMAIN=FOLDER "
                   "replaces the release's tokenizer of DOMAIN, e.g. tok_depth@224=path/to/folder")
_MODEL_HELP = "a pipeline bundle, a folder or a Hub repo id (default: the shipped src/polymodal/weights/default)"
_DEVICE_HELP = "torch device of the model: cpu, cuda, mps (default cpu)"
