"""LPIPS as an evaluation metric: mean perceptual distance of reconstructions to their originals."""

from __future__ import annotations

import torch

from rae_framework.interfaces import PerceptualLoss
from rae_metrics.configs import LPIPSMetricConfig
from rae_metrics.features import build_component
from rae_metrics.paired import PairedMeanMetric


class LPIPSMetric(PairedMeanMetric):
    """Mean per-image LPIPS (``{"lpips": ...}``; ``lpips@<preset>`` for a random, non-standard backbone).

    The distance is any registered ``perceptual`` component, built on first use and moved to the images'
    device.
    """

    Config = LPIPSMetricConfig
    key = "lpips"

    def __init__(self, config: LPIPSMetricConfig) -> None:
        self._distance: PerceptualLoss | None = None
        super().__init__(config)

    @property
    def distance(self) -> PerceptualLoss:
        """The perceptual network (frozen)."""
        if self._distance is None:
            self._distance = build_component("perceptual", self.config.perceptual)
        return self._distance

    def per_image(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """LPIPS ``(B,)``."""
        with torch.no_grad():
            return self.distance.to(generated.device)(generated, reference).double()

    def compute(self) -> dict[str, float]:
        """``{"lpips": mean}``, the key labelled when the backbone is not the pretrained one."""
        (value,) = super().compute().values()
        standard = getattr(self.distance.config, "pretrained_backbone", True)
        reference = self.config.perceptual
        return {self.key if standard else f"{self.key}@{reference.preset or reference.name}": value}
