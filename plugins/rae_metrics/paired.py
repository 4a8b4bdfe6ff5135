"""Shared machinery of paired per-image metrics (PSNR, SSIM): a running mean over images."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from rae_framework.config import ComponentConfig
from rae_framework.interfaces import Metric
from rae_metrics.state import MergeableState, Reduction


def require_pair(generated: torch.Tensor | None, reference: torch.Tensor | None, metric: str) -> None:
    """Paired metrics need both batches with equal shapes ``(B, C, H, W)``."""
    if generated is None or reference is None:
        raise ValueError(f"{metric} compares pairs: pass both generated and reference images")
    if generated.shape != reference.shape or generated.dim() != 4:
        raise ValueError(f"{metric} needs two (B, C, H, W) batches of equal shape, got "
                         f"{tuple(generated.shape)} and {tuple(reference.shape)}")


class PairedMeanMetric(MergeableState, Metric):
    """Mean of a per-image score over all pairs. State: ``total`` and ``count`` (both summed across ranks)."""

    key: ClassVar[str]
    paired: ClassVar[bool] = True  # compares reconstructions with their originals
    state_reductions: ClassVar[dict[str, Reduction]] = {"total": "sum", "count": "sum"}

    def __init__(self, config: ComponentConfig) -> None:
        Metric.__init__(self, config)
        self.reset()

    @abstractmethod
    def per_image(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` x2 -> score ``(B,)``."""

    def reset(self) -> None:
        """Forget all batches."""
        self._reset_state()

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Add a batch of (reconstruction, original) pairs in [0, 1]."""
        require_pair(generated, reference, self.key)
        values = self.per_image(generated, reference)
        self._add_state("total", values.sum())
        self._add_state("count", torch.tensor(float(values.numel())))

    def compute(self) -> dict[str, float]:
        """``{key: mean over images}``."""
        state = self.state_tensors()
        if state["count"].item() == 0:
            raise ValueError(f"{self.key}: no images were added")
        return {self.key: float(state["total"] / state["count"])}
