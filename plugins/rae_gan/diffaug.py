"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The operations of the reference (StyleGAN-T's ``DiffAugment``), applied in ``[-1, 1]`` space as there, so
that padding and cut-out fill with mid-grey: translation (zero-padded integer shifts up to ``ratio`` of the
side), colour (brightness, saturation, contrast), cut-out (a square of ``ratio`` of the side set to zero),
always in that order whatever the order of the policy string, as the reference applies them. Every random
draw comes from the given ``torch.Generator``: the same seed gives the same augmentation. Differentiable in the images. Augment real and fake discriminator inputs alike (one call each).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rae_framework.interfaces import Augmentation
from rae_gan.configs import DiffAugmentConfig


def _uniform(batch: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``U(0, 1)`` of shape ``(B, 1, 1, 1)`` on ``x``'s device and dtype."""
    device = generator.device if generator is not None else x.device
    return torch.rand(batch, 1, 1, 1, generator=generator, device=device).to(x)


def _randint(low: int, high: int, batch: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Integers in ``[low, high)`` of shape ``(B, 1, 1)`` on ``x``'s device."""
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, (batch, 1, 1), generator=generator, device=device).to(x.device)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2)) and contrast (x U(0.5, 1.5))."""
    batch = x.shape[0]
    x = x + (_uniform(batch, x, generator) - 0.5)
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    x = (x - grey) * (_uniform(batch, x, generator) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (_uniform(batch, x, generator) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by integers up to ``ratio`` of its side; uncovered pixels read the zero padding."""
    batch, _, height, width = x.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = _randint(-max_dy, max_dy + 1, batch, x, generator)  # (B, 1, 1)
    dx = _randint(-max_dx, max_dx + 1, batch, x, generator)
    rows = (torch.arange(height, device=x.device).view(1, -1, 1) + dy + 1).clamp(0, height + 1)  # (B, H, 1)
    cols = (torch.arange(width, device=x.device).view(1, 1, -1) + dx + 1).clamp(0, width + 1)  # (B, 1, W)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    batch_index = torch.arange(batch, device=x.device).view(-1, 1, 1)
    return padded[batch_index, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``ratio``-sided square at a random centre of each image (clipped at the borders)."""
    batch, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_y = _randint(0, height + (1 - size_y % 2), batch, x, generator)  # (B, 1, 1)
    centre_x = _randint(0, width + (1 - size_x % 2), batch, x, generator)
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


REFERENCE_ORDER = ("translation", "color", "cutout")  # src/disc/diffaug.py:L69-105 (translation, colour, cut-out)


class DiffAugment(Augmentation):
    """Applies the configured policy to a batch in ``[0, 1]`` (with probability ``prob`` per call)."""

    Config = DiffAugmentConfig

    def __init__(self, config: DiffAugmentConfig) -> None:
        super().__init__(config)
        chosen = set(config.policy.split(","))
        self.operations = [name for name in REFERENCE_ORDER if name in chosen]

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` in [0, 1] -> augmented batch, same shape, in [0, 1] space (values may leave it)."""
        if not self.operations or self.config.prob <= 0:
            return images
        if self.config.prob < 1 and _uniform(1, images, generator).item() >= self.config.prob:
            return images
        x = images * 2 - 1
        for name in self.operations:
            x = self._apply(name, x, generator)
        return (x + 1) / 2

    def _apply(self, name: str, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if name == "color":
            return color(x, generator)
        if name == "translation":
            return translation(x, self.config.translation_ratio, generator)
        return cutout(x, self.config.cutout_ratio, generator)
