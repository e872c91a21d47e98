"""Fixed sin-cos position tables, in 4M's exact layout (so official checkpoints' buffers are reproduced)."""

from __future__ import annotations

import torch


def sincos_1d(length: int, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """(1, length, dim) table: row n = [sin(n w_0..), cos(n w_0..)] with w_i = temperature^(-i / (dim/2))."""
    if dim % 2:
        raise ValueError(f"1D sin-cos positions need an even dim, got {dim}")
    half = dim // 2
    # float64 then float32: the closest float32 to the exact table (4M's float32 table differs by ~2e-5).
    omega = temperature ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()[None]


def sincos_2d(rows: int, cols: int, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """(1, rows*cols, dim) table, row-major: [sin(r w), cos(r w), sin(c w), cos(c w)], w_i = T^(-i / (dim/4))."""
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need a dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = temperature ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")
    ar = r.reshape(-1, 1) * omega
    ac = c.reshape(-1, 1) * omega
    return torch.cat([ar.sin(), ar.cos(), ac.sin(), ac.cos()], dim=1).float()[None]
