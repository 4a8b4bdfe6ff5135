"""Image arrays in the ADM layout: uint8 conversion, ``samples.npz`` and class-row grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rae_framework.data.npz_stream import Member, write_npz as write_npz_members
from rae_framework.files import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W, 3)`` uint8 (the ADM layout), truncated as the reference
    quantises its samples (src/sample_ddp.py:L276-277, ``clamp(0, 1).mul(255).to(torch.uint8)``)."""
    scaled = (images.float().clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Atomically write in-memory ``arr_0`` uint8 ``(N, H, W, 3)`` and ``arr_1`` int64 ``(N,)`` (through the
    streaming writer, :func:`rae_framework.data.npz_stream.write_npz`, as one chunk each)."""
    write_npz_members(path, {"arr_0": Member(images.shape, np.uint8, [images]),
                             "arr_1": Member(labels.shape, np.int64, [labels])})


def save_grid(images: np.ndarray, labels: np.ndarray, path: Path, columns: int, max_classes: int) -> None:
    """``grid.png``: one row per class (first ``max_classes`` classes present), ``columns`` samples each."""
    classes = [int(c) for c in np.unique(labels)][:max_classes]
    height, width = images.shape[1:3]
    grid = np.full((len(classes) * height, columns * width, 3), 255, dtype=np.uint8)
    for row, label in enumerate(classes):
        for column, index in enumerate(np.flatnonzero(labels == label)[:columns]):
            grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = images[index]
    atomic_write(path, lambda temp: Image.fromarray(grid).save(temp, format="PNG"))
