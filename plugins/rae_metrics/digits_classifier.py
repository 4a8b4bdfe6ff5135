"""The digits classifier: a domain feature extractor for the quickstart's handwritten digits.

A small CNN (three 3x3 conv + max-pool blocks, 16/32/32 channels, then a 64-d hidden layer and 10 logits)
trained on the real digits' training split as the ``digits`` data source renders them (8 x 8 upsampled to
32 x 32, grey in RGB). Its 64-d penultimate layer gives features for a digits FID (metric preset
``digits-fid``), its logits the class accuracy of samples (metric ``class-accuracy``). The weights ship with
this package (``weights/digits_classifier.safetensors``, 190 kB) and are reproduced, seeded, by
``python examples/quickstart/train_digits_classifier.py --threads 1``. Its numbers are domain numbers, not
comparable with Inception FIDs, so metrics label them ``@digits-classifier``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from rae_framework.errors import WeightsNotFoundError
from rae_metrics.configs import DigitsClassifierConfig
from rae_metrics.features import FeatureExtractor, Features

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_classifier.safetensors"
CHANNELS = (16, 32, 32)
HIDDEN = 64
CLASSES = 10


def conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    """3x3 conv, ReLU, 2x2 max-pool (halves the side)."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class DigitsClassifier(FeatureExtractor):
    """``(B, 3, H, W)`` in [0, 1] -> 64-d penultimate features and 10 digit logits."""

    Config = DigitsClassifierConfig
    feature_dim = HIDDEN
    num_logits = CLASSES

    def __init__(self, config: DigitsClassifierConfig) -> None:
        super().__init__(config)
        side = config.input_size // 2 ** len(CHANNELS)
        with torch.random.fork_rng(devices=[]):  # random weights (pretrained: false) are seeded
            torch.manual_seed(0)
            self.body = nn.Sequential(conv_block(3, CHANNELS[0]), conv_block(CHANNELS[0], CHANNELS[1]),
                                      conv_block(CHANNELS[1], CHANNELS[2]), nn.Flatten(),
                                      nn.Linear(CHANNELS[2] * side * side, HIDDEN), nn.ReLU())
            self.head = nn.Linear(HIDDEN, CLASSES)
        if config.pretrained:
            self.load_state_dict(load_file(str(weights_path(config))), strict=True)
        self.requires_grad_(False).eval()

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> logits ``(B, 10)`` and features ``(B, 64)``; differentiable (training)."""
        x = images.float()
        if x.shape[-1] != self.config.input_size or x.shape[-2] != self.config.input_size:
            x = F.interpolate(x, size=(self.config.input_size,) * 2, mode="bilinear", align_corners=False)
        features = self.body(x * 2 - 1)  # (B, 64)
        return self.head(features), features

    def forward(self, images: torch.Tensor) -> Features:
        """``(B, 3, H, W)`` in [0, 1] -> :class:`Features` (pool ``(B, 64)``, logits ``(B, 10)``)."""
        logits, features = self.logits_and_features(images)
        return Features(features, logits)


def weights_path(config: DigitsClassifierConfig) -> Path:
    """The configured weights file (default: the shipped one), or a :class:`WeightsNotFoundError`."""
    path = Path(config.weights) if config.weights else SHIPPED_WEIGHTS
    if not path.is_file():
        raise WeightsNotFoundError(f"digits-classifier weights not found at {path}: recreate them with "
                                   f"`python examples/quickstart/train_digits_classifier.py --out {path}`")
    return path
