"""PSNR of paired images: ``10 log10(R^2 / MSE)`` per image, averaged over images."""

from __future__ import annotations

import torch

from rae_metrics.configs import PSNRConfig
from rae_metrics.paired import PairedMeanMetric

MSE_FLOOR = 1e-10  # identical images give a finite PSNR (100 dB at R = 1) instead of inf


def psnr_per_image(generated: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``(B, C, H, W)`` x2 -> PSNR in dB ``(B,)`` (float64)."""
    error = (generated.double() - reference.double()) ** 2
    mse = error.flatten(1).mean(1).clamp_min(MSE_FLOOR)  # (B,)
    return 10.0 * torch.log10(data_range ** 2 / mse)


class PSNR(PairedMeanMetric):
    """Mean per-image PSNR in dB (``compute() -> {"psnr": ...}``)."""

    Config = PSNRConfig
    key = "psnr"

    def per_image(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """PSNR ``(B,)``."""
        return psnr_per_image(generated, reference, self.config.data_range)
