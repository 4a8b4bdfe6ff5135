"""LPIPS perceptual distance (Zhang et al. 2018) through the ``lpips`` package, frozen.

The linear calibration heads ship with ``lpips``; the backbone (VGG16 in the reference) comes from
torchvision's ImageNet weights, which ``lpips`` would download. We check the torch hub cache first and raise
:class:`WeightsNotFoundError` naming the file and the folder instead of ever attempting a download.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from rae_framework import ensure_torchvision_importable
from rae_framework.errors import WeightsNotFoundError
from rae_framework.interfaces import PerceptualLoss
from rae_gan.configs import LPIPSConfig

# lpips' backbone name -> torchvision weights enum holding the download URL (and so the cache file name)
BACKBONE_WEIGHTS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def backbone_weights_path(net: str) -> tuple[Path, str]:
    """Where torchvision caches ``net``'s ImageNet weights, and the URL they come from."""
    ensure_torchvision_importable()
    import torchvision

    url = getattr(torchvision.models, BACKBONE_WEIGHTS[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def require_backbone_weights(net: str) -> None:
    """Raise :class:`WeightsNotFoundError` unless ``net``'s backbone weights are in the torch hub cache."""
    path, url = backbone_weights_path(net)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"LPIPS needs the torchvision ImageNet weights of its '{net}' backbone: download {url} and put it "
            f"at {path} (the torch hub cache; set TORCH_HOME to move it). For tests, use "
            f"pretrained_backbone: false.")


class LPIPS(PerceptualLoss):
    """Frozen LPIPS distance between two ``[0, 1]`` image batches, per sample ``(B,)``."""

    Config = LPIPSConfig

    def __init__(self, config: LPIPSConfig) -> None:
        super().__init__(config)
        if config.pretrained_backbone:
            require_backbone_weights(config.net)
        ensure_torchvision_importable()
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=config.net, lpips=config.linear_calibration,
                                     pnet_rand=not config.pretrained_backbone, verbose=False)
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode (no dropout in the calibration heads) whatever the caller's mode."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` x2 in [0, 1] -> distance ``(B,)``; differentiable in ``images``."""
        distance = self.model(images, targets, normalize=True)  # (B, 1, 1, 1); normalize maps to [-1, 1]
        return distance.flatten(1).sum(1)
