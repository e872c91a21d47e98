"""4M's masked-modeling loss, apart from the model: cross-entropy at target positions."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn import functional as F

from ..nn.gemm import native_bf16_cpu, rounded_bf16_mm
from ..nn.linear import linear, matmul
from .fourm import TargetLogits


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; a bf16 product on a CPU without bf16 instructions by the float32 kernel (`nn.gemm`), a float32 one
    by oneDNN where that is faster (`nn.linear`)."""
    if a.dtype == torch.bfloat16 and a.device.type == "cpu" and not native_bf16_cpu():
        return rounded_bf16_mm(a, b)
    return matmul(a, b)


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum over rows of cross_entropy(x @ w.T, t), with the gradient of the logits made in the forward pass.

    The plain path writes the logits, their log-softmax, a one-hot gradient and the softmax gradient, each a
    (n, V) tensor (V up to 30,000); here a float32 product's buffer becomes softmax - onehot in place (one exp
    per element), a bf16 product's softmax is one float32 log_softmax kernel over it, and the gradient is kept in
    the products' dtype; the backward pass is the two matrix products, scaled on the (n, D) side. The products run
    in the dtype of the forward's product (bf16 under autocast, as autocast runs a linear's backward), the softmax
    in float32, as autocast does for cross-entropy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        # autocast's policy for the head's nn.Linear: both operands in the autocast dtype
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        xc, wc = x.to(dtype), w.to(dtype)
        with torch.autocast(dev, enabled=False):
            if xc.dtype == torch.bfloat16 and dev == "cpu" and not native_bf16_cpu():
                logits = F.linear(xc.float(), wc.float()).to(torch.bfloat16)  # see polymodal.nn.gemm
            else:
                logits = linear(xc, wc)  # faster than xc @ wc.t() at small widths
        rows = torch.arange(targets.shape[0], device=x.device)
        if logits.dtype in (torch.float32, torch.float64):
            # in place in the product's own buffer: no (n, V) allocation
            target_logit = logits[rows, targets]
            m = logits.amax(dim=1, keepdim=True)
            logits.sub_(m).exp_()
            s = logits.sum(dim=1, keepdim=True)
            loss = (s.log() + m).squeeze(1).sub_(target_logit).sum()
            grad = logits.div_(s)
        else:
            # A low-precision product: softmax in float32 by one fused kernel that reads the bf16 logits (row by
            # row, in cache) instead of a float32 copy and five passes over it (max, subtract, exp, sum, divide)
            logp = torch.log_softmax(logits, dim=1, dtype=torch.float32)
            loss = logp[rows, targets].sum().neg()
            grad = logp.exp_()
        grad[rows, targets] -= 1.0
        # saved in the products' dtype: the backward pass casts it there anyway, and the float32 buffer is freed
        # now rather than held until the backward pass (n x V x 4 bytes per output modality)
        ctx.save_for_backward(grad.to(xc.dtype), xc, wc)
        ctx.dtypes = (x.dtype, w.dtype)
        return loss

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grad, xc, wc = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _mm(grad, wc).mul_(g).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            dw = _mm(grad.t(), xc * g.to(xc.dtype)).to(ctx.dtypes[1])
        return dx, dw, None


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """``cross_entropy(x @ weight.T, targets, reduction="sum")`` (float32) without materializing the
    log-softmax; x (n, D), weight (V, D), targets (n,)."""
    if label_smoothing or targets.numel() == 0:
        return F.cross_entropy(F.linear(x, weight).float(), targets, reduction="sum",
                               label_smoothing=label_smoothing)
    return _LinearCrossEntropy.apply(x, weight, targets)


def modality_losses(outputs: Mapping[str, TargetLogits], *, label_smoothing: float = 0.0
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per modality: (sum of token cross-entropies, number of valid target tokens), both scalars (float32)."""
    out = {}
    for name, o in outputs.items():
        target_ids = o.target_ids
        if o.logits is None:  # the model deferred the vocabulary projection to the loss
            ce = linear_cross_entropy(o.hidden, o.head, target_ids, label_smoothing=label_smoothing)
        else:
            ce = F.cross_entropy(o.logits.float(), target_ids, reduction="sum", label_smoothing=label_smoothing)
        out[name] = (ce, torch.tensor(float(target_ids.numel()), device=ce.device))
    return out


def masked_modeling_loss(outputs: Mapping[str, TargetLogits], *, weighting: str = "modality",
                         label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and each modality's mean token loss.

    ``weighting="modality"`` (4M): mean cross-entropy per modality, averaged over the modalities that have
    targets in the batch, so a modality's weight does not depend on how many tokens it was given.
    ``weighting="token"``: mean over all target tokens of all modalities.
    """
    if weighting not in ("modality", "token"):
        raise ValueError(f"weighting must be 'modality' or 'token', got {weighting!r}")
    parts = modality_losses(outputs, label_smoothing=label_smoothing)
    if not parts:
        raise ValueError("no target modality in the outputs: nothing to compute a loss on")
    per_mod = {name: s / n.clamp(min=1) for name, (s, n) in parts.items()}
    if weighting == "token":
        total = sum(s for s, _ in parts.values()) / sum(n for _, n in parts.values()).clamp(min=1)
    else:
        present = [(per_mod[name], (n > 0).float()) for name, (_, n) in parts.items()]
        total = sum(lm * p for lm, p in present) / sum(p for _, p in present).clamp(min=1)
    return total, per_mod
