"""Sampling stage: class labels -> noise -> guided integration -> RAE decode -> ``samples.npz`` + ``grid.png``.

Batch ``k`` of the global label list uses noise from a generator seeded by ``(seed, k)`` and is produced by
rank ``k % world_size``; ranks write their batches to uint8 shard files that rank 0 streams into
``samples.npz`` in batch order, so the result does not depend on the number of processes and no process
holds more than a batch of images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rae_framework.data.sample_shards import ShardLayout, ShardWriter, grid_rows, merge_shards
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


def save_grid(samples: Path, labels: np.ndarray, path: Path, columns: int, max_classes: int) -> None:
    """``grid.png``: one row per class (first ``max_classes`` classes present), ``columns`` samples each,
    read from ``samples`` (only the rows shown)."""
    classes, picked = grid_rows(samples, labels, columns, max_classes)  # (K, columns, H, W, 3)
    rows, _, height, width, _ = picked.shape
    grid = picked.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def run_sampling(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                 stage: SampleStage, out_folder: str | Path, *, seed: int, guidance: Guidance | None = None,
                 guide: Denoiser | None = None, context: DistContext | None = None) -> Path | None:
    """Generate every label's sample into ``out_folder/samples.npz`` and ``grid.png``; returns the npz path.

    Each rank writes its batches into its own uint8 shard as they come; rank 0 streams the shards into
    ``samples.npz`` (:mod:`rae_framework.data.sample_shards`): memory is one batch, whatever the count."""
    context, folder = context or DistContext(), Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(stage, denoiser.num_classes, seed)
    layout = ShardLayout(len(labels), stage.batch_size, context.world_size)
    writer, mine = None, layout.batches(context.rank)
    bar = progress(len(mine), "sample", enabled=context.is_main)
    for k in mine:
        images = generate_batch(denoiser, schedule, sampler, decode, labels[layout.rows(k).start:layout.rows(k).stop],
                                step_generator(seed, STREAM_SAMPLING, k), guidance=guidance, guide=guide,
                                device=context.device)  # (b, H, W, 3) uint8
        writer = writer or ShardWriter(folder, layout, context.rank, images.shape[1:])
        writer.write(k, images)
        bar.update(1)
    bar.close()
    if writer is not None:
        writer.close()
    context.barrier()
    if not context.is_main:
        return None
    merge_shards(folder, layout, labels.numpy(), folder / "samples.npz")
    save_grid(folder / "samples.npz", labels.numpy(), folder / "grid.png", stage.grid_columns, stage.grid_max_classes)
    return folder / "samples.npz"
