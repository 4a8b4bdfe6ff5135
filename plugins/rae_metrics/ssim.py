"""Gaussian-window SSIM, equal to skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=...)``: per-channel SSIM maps over the valid window
positions (skimage crops the border it filtered with 'reflect'), averaged over channels, then images."""

from __future__ import annotations

import torch

from rae_metrics.configs import SSIMConfig
from rae_metrics.paired import PairedMeanMetric


def gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(2r + 1,)`` with ``r = int(truncate * sigma + 0.5)`` (scipy.ndimage's)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering of ``(N, H, W)`` -> ``(N, H - k + 1, W - k + 1)`` (windows @ kernel: a BLAS
    product, faster than a float64 conv2d on CPU)."""
    x = x.unfold(-2, kernel.numel(), 1) @ kernel  # (N, H', W)
    return x.unfold(-1, kernel.numel(), 1) @ kernel  # (N, H', W')


def ssim_per_image(generated: torch.Tensor, reference: torch.Tensor, config: SSIMConfig) -> torch.Tensor:
    """``(B, C, H, W)`` x2 -> SSIM ``(B,)`` (float64)."""
    batch, channels = generated.shape[:2]
    kernel = gaussian_kernel(config.sigma, config.truncate).to(generated.device)
    if min(generated.shape[-2:]) < kernel.numel():
        raise ValueError(f"ssim: images {tuple(generated.shape[-2:])} are smaller than the {kernel.numel()}-tap window")
    x = generated.double().flatten(0, 1)  # (B*C, H, W)
    y = reference.double().flatten(0, 1)
    mu_x, mu_y = _blur(x, kernel), _blur(y, kernel)
    var_x = _blur(x * x, kernel) - mu_x ** 2
    var_y = _blur(y * y, kernel) - mu_y ** 2
    cov_xy = _blur(x * y, kernel) - mu_x * mu_y
    c1 = (config.k1 * config.data_range) ** 2
    c2 = (config.k2 * config.data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1).view(batch, channels).mean(1)


class SSIM(PairedMeanMetric):
    """Mean per-image SSIM (``compute() -> {"ssim": ...}``)."""

    Config = SSIMConfig
    key = "ssim"

    def per_image(self, generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """SSIM ``(B,)``."""
        return ssim_per_image(generated, reference, self.config)
