"""Sampling stage: class labels -> noise -> guided integration -> RAE decode -> ``samples.npz`` + ``grid.png``.

Batch ``k`` of the global label list uses noise from a generator seeded by ``(seed, k)`` and is produced by
rank ``k % world_size``; ranks write their batches to part files that rank 0 merges in batch order, so
the result does not depend on the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rae_framework.engine.config import SampleStage
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.draws import step_generator
from rae_framework.engine.logging import progress
from rae_framework.interfaces import Denoiser, Guidance, NoiseSchedule, Sampler, VelocityFn

STREAM_SAMPLING = 3


def sample_labels(stage: SampleStage, num_classes: int, seed: int) -> torch.Tensor:
    """``(num_classes * per_class,)`` int64 labels: class-major blocks (``equal``) or uniform (``random``)."""
    total = num_classes * stage.per_class
    if stage.labels == "equal":
        return torch.arange(num_classes).repeat_interleave(stage.per_class)
    return torch.randint(num_classes, (total,), generator=step_generator(seed, STREAM_SAMPLING, -1))


def velocity_field(denoiser: Denoiser, labels: torch.Tensor, guidance: Guidance | None,
                   guide: Denoiser | None) -> VelocityFn:
    """The field to integrate: guided when a guidance component is configured, else the plain model."""
    if guidance is not None:
        return guidance.velocity(denoiser, labels, guide=guide)
    return lambda x, t: denoiser(x, t, labels)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W, 3)`` uint8 (the ADM layout)."""
    scaled = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate_batch(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                   labels: torch.Tensor, generator: torch.Generator, *, guidance: Guidance | None = None,
                   guide: Denoiser | None = None, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """One batch of images ``(B, H, W, 3)`` uint8 for ``labels (B,)``."""
    shape = (labels.shape[0], denoiser.in_channels, denoiser.input_size, denoiser.input_size)
    noise = torch.randn(shape, generator=generator).to(device)  # (B, C, h, w)
    labels = labels.to(device)
    result = sampler.sample(velocity_field(denoiser, labels, guidance, guide), noise, schedule,
                            generator=generator)
    return to_uint8(decode(result.samples))


def save_grid(images: np.ndarray, labels: np.ndarray, path: Path, columns: int, max_classes: int) -> None:
    """``grid.png``: one row per class (first ``max_classes`` classes present), ``columns`` samples each."""
    classes = [int(c) for c in np.unique(labels)][:max_classes]
    height, width = images.shape[1:3]
    grid = np.full((len(classes) * height, columns * width, 3), 255, dtype=np.uint8)
    for row, label in enumerate(classes):
        for column, index in enumerate(np.flatnonzero(labels == label)[:columns]):
            grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = images[index]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Atomically write ``arr_0`` uint8 ``(N, H, W, 3)`` and ``arr_1`` int64 ``(N,)``."""
    temp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(temp, arr_0=images, arr_1=labels.astype(np.int64))
    os.replace(temp, path)


def _merge_parts(folder: Path, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ranks' part files in global batch order, then delete them."""
    parts = [np.load(folder / f".part_{rank}.npz") for rank in range(world_size)]
    batches = sorted((int(k), rank, i) for rank, part in enumerate(parts) for i, k in enumerate(part["batches"]))
    images = np.concatenate([parts[rank][f"images_{i}"] for _, rank, i in batches])
    labels = np.concatenate([parts[rank][f"labels_{i}"] for _, rank, i in batches])
    for rank in range(world_size):
        (folder / f".part_{rank}.npz").unlink()
    return images, labels


def run_sampling(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                 stage: SampleStage, out_folder: str | Path, *, seed: int, guidance: Guidance | None = None,
                 guide: Denoiser | None = None, context: DistContext | None = None) -> Path | None:
    """Generate every label's sample into ``out_folder/samples.npz`` and ``grid.png``; returns the npz path."""
    context, folder = context or DistContext(), Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(stage, denoiser.num_classes, seed)
    mine = list(range(context.rank, -(-len(labels) // stage.batch_size), context.world_size))
    arrays: dict[str, np.ndarray] = {"batches": np.asarray(mine, dtype=np.int64)}
    bar = progress(len(mine), "sample", enabled=context.is_main)
    for i, k in enumerate(mine):
        batch_labels = labels[k * stage.batch_size:(k + 1) * stage.batch_size]
        arrays[f"images_{i}"] = generate_batch(denoiser, schedule, sampler, decode, batch_labels,
                                               step_generator(seed, STREAM_SAMPLING, k), guidance=guidance,
                                               guide=guide, device=context.device)
        arrays[f"labels_{i}"] = batch_labels.numpy()
        bar.update(1)
    bar.close()
    np.savez(folder / f".part_{context.rank}.npz", **arrays)
    context.barrier()
    if not context.is_main:
        return None
    images, all_labels = _merge_parts(folder, context.world_size)
    write_npz(folder / "samples.npz", images, all_labels)
    save_grid(images, all_labels, folder / "grid.png", stage.grid_columns, stage.grid_max_classes)
    return folder / "samples.npz"
