"""Tensor helpers that several component families share (public API for plugins).

Plugins import from here instead of from each other: the decoder (``rae_decoders``) and the denoisers
(``rae_denoisers``) both lay tokens on a square row-major grid, add the same fixed 2-D sin-cos position table
and turn per-token patches back into images the same way. The arguments are keyword-only where two
integers could be swapped silently.
"""

from __future__ import annotations

import math

import torch


def unpatchify(tokens: torch.Tensor, *, patch_size: int, channels: int) -> torch.Tensor:
    """``(B, h*w, p*p*C)`` tokens of a square row-major grid, each ``(py, px, c)`` with the channel fastest,
    -> images ``(B, C, h*p, w*p)`` (the inverse of the reference's ``patchify``; MAE/DiT layout)."""
    batch, count, _ = tokens.shape
    side, p = math.isqrt(count), patch_size
    grid = tokens.reshape(batch, side, side, p, p, channels)  # (B, h, w, py, px, C)
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, side * p, side * p)


def sincos_pos_embed(dim: int, grid: int, *, cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos position table ``(grid*grid, dim)`` (MAE/DiT), float32, computed in float64.

    The first half of the channels encodes the column, the second the row; each half is
    ``[sin(pos * w_k)] ++ [cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim/4))``. With ``cls_token`` a row
    of zeros comes first: ``(1 + grid*grid, dim)``.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)
    positions = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(positions, positions, indexing="ij")  # (grid, grid) each
    halves = [_sin_cos(axis.reshape(-1, 1) * omega) for axis in (cols, rows)]  # 2 x (grid*grid, dim/2)
    table = torch.cat(halves, dim=1)  # (grid*grid, dim)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)  # (1 + grid*grid, dim)
    return table.float()


def _sin_cos(angles: torch.Tensor) -> torch.Tensor:
    return torch.cat([angles.sin(), angles.cos()], dim=1)
