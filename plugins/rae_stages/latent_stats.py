"""Stage ``latent_stats``: exact per-position mean/var of the raw latents over the training split.

Each rank streams a contiguous shard through :class:`rae_framework.engine.statistics.LatentStatistics`;
the shards are merged in rank order and rank 0 writes ``checkpoints/latent_stats.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rae_framework.autoencoder import tokens_to_latent
from rae_framework.data.datasets import build_dataset
from rae_framework.engine import (DistContext, LatentStatistics, RunLogger, RunState, all_reduce_statistics,
                                  build_rae, progress, save_statistics)
from rae_framework.interfaces import Stage
from rae_stages.configs import LatentStatsStage


@torch.no_grad()
def raw_latents(rae, images: torch.Tensor) -> torch.Tensor:
    """Un-normalised, noise-free latents ``(B, C, h, w)`` of ``[0, 1]`` images."""
    return tokens_to_latent(rae.encode_tokens(images))


def shard_range(total: int, context: DistContext) -> range:
    """This rank's contiguous share of ``range(total)``."""
    share = -(-total // context.world_size)
    return range(min(total, context.rank * share), min(total, (context.rank + 1) * share))


def compute_latent_statistics(rae, dataset, path: str | Path, *, batch_size: int, context: DistContext,
                              logger: RunLogger) -> LatentStatistics:
    """Stream the dataset through the encoder, merge over ranks, save on rank 0; returns the statistics."""
    rae.eval()
    rows, statistics = shard_range(len(dataset), context), LatentStatistics()
    bar = progress(len(rows), "latent_stats", enabled=context.is_main)
    for start in range(rows.start, rows.stop, batch_size):
        indices = range(start, min(start + batch_size, rows.stop))
        images = torch.stack([dataset[index][0] for index in indices]).to(context.device)
        statistics.update(raw_latents(rae, images))
        bar.update(len(indices))
    bar.close()
    statistics = all_reduce_statistics(statistics)
    if context.is_main:
        save_statistics(path, statistics.mean, statistics.var)
        logger.info(f"latent_stats: {statistics.count} images, mean |mu| {statistics.mean.abs().mean():.4f}, "
                    f"mean var {statistics.var.mean():.4f}")
    context.barrier()
    return statistics


class LatentStats(Stage):
    """``latent_stats`` -> ``checkpoints/latent_stats.safetensors`` (one streamed pass; nothing to resume)."""

    Config = LatentStatsStage

    def run(self, run: RunState) -> None:
        """Exact latent mean/var of the raw (un-normalised) latents over the training split."""
        rae = build_rae(run, trained_decoder=False, computed_statistics=False)
        compute_latent_statistics(rae, build_dataset(run.assembly.data, "train"),
                                  run.output_path("latent_stats"), batch_size=self.config.batch_size,
                                  context=run.context, logger=run.logger)
