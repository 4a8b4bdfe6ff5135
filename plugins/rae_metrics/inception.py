"""The FID Inception-v3 (pytorch-fid's port of the TF 2015-12-05 graph) as a feature extractor.

torchvision's Inception-v3 with pytorch-fid's changes: 1008 classes, average pools that exclude the padding
(Mixed_5*, 6*, 7b) and a max pool in Mixed_7c's pool branch. Inputs are resized to 299x299 (bilinear) and
mapped to [-1, 1]. Features: the 2048-d pool3 vector; logits: the 1008-way fc output (Inception Score);
spatial: ADM's sFID features (7 channels of Mixed_6d's 1x1 branch, 2023-d).
The weights ``pt_inception-2015-12-05-6726825d.pth`` are read from a local path or the torch hub cache;
they are never downloaded here. These features give FIDs comparable to pytorch-fid's (the ADM TF evaluator
differs slightly in resizing).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from rae_framework import ensure_torchvision_importable
from rae_framework.errors import WeightsNotFoundError
from rae_metrics.configs import InceptionConfig
from rae_metrics.features import FeatureExtractor, Features

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
        "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")
# TF's graph numbers the mixed blocks mixed, mixed_1, ..., mixed_10 = Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, ...:
# ADM's spatial layer "mixed_6/conv" is Mixed_6d's 1x1 branch.
SPATIAL_BLOCK = "Mixed_6d"
SPATIAL_CHANNELS = 7


def spatial_features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ADM's sFID features from the input ``(B, 768, 17, 17)`` of Mixed_6d: its 1x1 branch (TF
    ``mixed_6/conv``, after batch norm and ReLU), the first 7 of 192 channels, flattened in TF's NHWC order
    -> ``(B, 17 * 17 * 7 = 2023)`` (reference: guided-diffusion evaluations/evaluator.py:L24 and L599)."""
    branch = getattr(net, SPATIAL_BLOCK).branch1x1(x)[:, :SPATIAL_CHANNELS]  # (B, 7, 17, 17)
    return branch.permute(0, 2, 3, 1).flatten(1)


def fid_weights_path(config: InceptionConfig) -> Path:
    """The FID weights file (local path or torch hub cache), or a :class:`WeightsNotFoundError`."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[-1]
    path = Path(config.weights) if config.weights else cached
    if not path.is_file():
        raise WeightsNotFoundError(
            f"FID Inception weights not found at {path}: download {FID_WEIGHTS_URL} and put it at {cached} "
            f"(the torch hub cache; set TORCH_HOME to move it) or pass `weights: /path/to/file`. Offline tests "
            f"can use pretrained: false or the 'random-conv' feature extractor.")
    return path


def _pool_branch_replaced(block_class: type, pool) -> type:
    """A torchvision Inception block class whose pool branch uses ``pool(x)`` (pytorch-fid's variants)."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branches = block_class._forward(self, x)
        branches[-1] = self.branch_pool(pool(x))
        return branches

    return type(f"FID{block_class.__name__}", (block_class,), {"_forward": _forward})


def _avg_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def fid_inception_v3() -> torch.nn.Module:
    """The FID Inception-v3 graph with untrained weights."""
    ensure_torchvision_importable()
    from torchvision.models import inception

    blocks = [inception.BasicConv2d, _pool_branch_replaced(inception.InceptionA, _avg_pool_without_padding),
              inception.InceptionB, _pool_branch_replaced(inception.InceptionC, _avg_pool_without_padding),
              inception.InceptionD, _pool_branch_replaced(inception.InceptionE, _avg_pool_without_padding),
              inception.InceptionAux]
    net = inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False, inception_blocks=blocks)
    net.Mixed_7c = _pool_branch_replaced(inception.InceptionE, _max_pool)(2048)
    return net


class InceptionFeatures(FeatureExtractor):
    """pool3 features ``(B, 2048)`` and logits ``(B, 1008)`` of the FID Inception-v3."""

    Config = InceptionConfig
    feature_dim = 2048
    num_logits = 1008
    spatial_dim = 17 * 17 * SPATIAL_CHANNELS  # at 299 x 299 input
    standard = True

    def __init__(self, config: InceptionConfig) -> None:
        super().__init__(config)
        path = fid_weights_path(config) if config.pretrained else None  # fail before building
        self.net = fid_inception_v3()
        if path is not None:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        self.standard = config.pretrained
        self.spatial_dim = self.spatial_dim if config.resize_input else 0  # else it depends on the image size
        self.net.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> Features:
        """``(B, 3, H, W)`` in [0, 1] -> pool3 features, 1008 logits and the sFID spatial features."""
        x = images.float()
        if self.config.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1  # (B, 3, 299, 299) in [-1, 1]
        spatial = None
        for name in STEM:
            if name == SPATIAL_BLOCK:
                spatial = spatial_features(self.net, x)
            x = getattr(self.net, name)(x)
        pool = x.flatten(1)  # (B, 2048)
        return Features(pool, self.net.fc(pool), spatial)
