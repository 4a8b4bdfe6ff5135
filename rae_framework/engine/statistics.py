"""Exact per-position latent statistics (mean and variance of shape ``(C, h, w)``) over a dataset.

Streaming and exact: each batch is reduced in float64 to ``(count, mean, M2)`` and merged with Chan et al.'s
parallel formula, so the result is deterministic for a given data order, independent of the batch size up to
float64 rounding, and mergeable across ranks (:func:`all_reduce_statistics`). The variance is the population
variance ``M2 / count`` (what the latent normalisation divides by). Files: safetensors ``{"mean", "var"}``;
the reference's ``.pt`` stat files (``mean`` and/or ``var``, either optional) load too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from rae_framework.errors import ConfigError
from rae_framework.files import atomic_write, read_tensor_file


class LatentStatistics:
    """Running ``(count, mean, M2)`` over samples of one shape, in float64."""

    def __init__(self, count: int = 0, mean: torch.Tensor | None = None, m2: torch.Tensor | None = None) -> None:
        self.count = int(count)
        self.running_mean = None if mean is None else mean.double()
        self.m2 = None if m2 is None else m2.double()

    def update(self, batch: torch.Tensor) -> LatentStatistics:
        """Add a batch ``(B, *shape)`` of samples; returns self."""
        values = batch.detach().double()
        batch_mean = values.mean(dim=0)
        batch_m2 = ((values - batch_mean) ** 2).sum(dim=0)
        return self.merge(LatentStatistics(values.shape[0], batch_mean.cpu(), batch_m2.cpu()))

    def merge(self, other: LatentStatistics) -> LatentStatistics:
        """Fold ``other`` (later samples) into self with Chan's formula; returns self."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.running_mean, self.m2 = other.count, other.running_mean.clone(), other.m2.clone()
            return self
        if other.running_mean.shape != self.running_mean.shape:
            raise ConfigError(f"cannot merge statistics of shapes {tuple(self.running_mean.shape)} and "
                              f"{tuple(other.running_mean.shape)}")
        total = self.count + other.count
        delta = other.running_mean - self.running_mean
        self.running_mean = self.running_mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / total)
        self.count = total
        return self

    @property
    def mean(self) -> torch.Tensor:
        """Per-position mean (float64)."""
        self._require_samples()
        return self.running_mean

    @property
    def var(self) -> torch.Tensor:
        """Per-position population variance ``M2 / count`` (float64)."""
        self._require_samples()
        return self.m2 / self.count

    def _require_samples(self) -> None:
        if self.count == 0:
            raise ConfigError("latent statistics of an empty dataset are undefined")


def all_reduce_statistics(stats: LatentStatistics) -> LatentStatistics:
    """Merge every rank's statistics (in rank order, so all ranks get identical results).

    Without an initialised ``torch.distributed`` process group this returns ``stats`` unchanged.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stats
    gathered: list[tuple | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (stats.count, stats.running_mean, stats.m2))
    merged = LatentStatistics()
    for count, mean, m2 in gathered:
        merged.merge(LatentStatistics(count, mean, m2))
    return merged


def save_statistics(path: str | Path, mean: torch.Tensor | None, var: torch.Tensor | None) -> None:
    """Write ``{"mean", "var"}`` (float32, the present ones) as safetensors, atomically."""
    tensors = {name: value.float().contiguous().cpu() for name, value in (("mean", mean), ("var", var))
               if value is not None}
    atomic_write(path, lambda temp: save_file(tensors, str(temp)))


def load_statistics(path: str | Path) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(mean, var)`` from a safetensors file or a reference ``.pt`` stat file; a missing entry is None."""
    tensors = read_tensor_file(path, "latent statistics file")
    if not {"mean", "var"} & set(tensors):
        raise ConfigError(f"{path}: a statistics file holds 'mean' and/or 'var'")
    return tensors.get("mean"), tensors.get("var")
