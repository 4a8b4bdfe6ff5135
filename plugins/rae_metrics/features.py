"""Feature networks for distribution metrics (kind ``feature_extractor``) and the offline ``random-conv``.

A :class:`FeatureExtractor` maps ``[0, 1]`` images to :class:`Features` (a pooled feature vector per image
and, if it has a classifier, logits). ``standard`` says whether numbers computed on its features are
comparable to published ones (only the pretrained FID Inception); metrics label the others in their keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rae_framework.config import ComponentConfig
from rae_framework.interfaces import Component
from rae_metrics.configs import ComponentRef, RandomConvConfig


@dataclass(frozen=True)
class Features:
    """What an extractor returns for a batch."""

    pool: torch.Tensor  # (B, feature_dim)
    logits: torch.Tensor | None  # (B, num_logits), or None without a classifier
    spatial: torch.Tensor | None = None  # (B, S) flattened early feature map (sFID), or None

    def field(self, name: str) -> torch.Tensor:
        """The features named ``name`` (``pool``, ``spatial`` or ``logits``); an error when absent."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this feature extractor gives no '{name}' features")
        return value


class FeatureExtractor(Component, nn.Module, ABC):
    """Interface of kind ``feature_extractor``: frozen network, ``[0, 1]`` images -> :class:`Features`."""

    feature_dim: ClassVar[int]
    num_logits: ClassVar[int]  # 0 when there is no classifier
    spatial_dim: ClassVar[int] = 0  # size of Features.spatial; 0 when absent or dependent on the image size
    standard: bool = False  # True only where metric values are comparable to published numbers

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Feature networks always stay in eval mode."""
        return super().train(False)

    @abstractmethod
    def forward(self, images: torch.Tensor) -> Features:
        """``(B, 3, H, W)`` in [0, 1] -> features (and logits)."""


class RandomConvFeatures(FeatureExtractor):
    """Two strided convs with fixed seeded random weights, global average pool, a linear projection.

    Offline and fast, for tests and smoke runs; its FID/IS/precision/recall are NOT comparable to
    Inception-based numbers, so metrics report them under keys suffixed ``@random-conv``.
    """

    Config = RandomConvConfig
    feature_dim = 0  # set per instance from the config
    num_logits = 0

    def __init__(self, config: RandomConvConfig) -> None:
        super().__init__(config)
        self.feature_dim, self.num_logits = config.feature_dim, config.num_logits
        self.body = nn.Sequential(nn.Conv2d(3, config.width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(config.width, config.width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(config.width, config.feature_dim))
        self.classifier = nn.Linear(config.feature_dim, config.num_logits)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for parameter in self.parameters():  # weights N(0, 1/fan_in), biases 0
                scale = parameter[0].numel() ** -0.5 if parameter.dim() > 1 else 0.0
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> Features:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, feature_dim)`` features, ``(B, num_logits)`` logits and, as
        spatial features, the first conv's map flattened ``(B, width * H/2 * W/2)``."""
        early = self.body[:2](images.float() * 2 - 1)  # (B, width, H/2, W/2)
        pool = self.body[2:](early)
        return Features(pool, self.classifier(pool), early.flatten(1))


def build_component(kind: str, spec: ComponentRef) -> object:
    """Build the ``kind`` component named by ``spec`` through the registry (third-party ones included)."""
    import rae_framework

    return rae_framework.build(kind, spec.name, spec.params, preset=spec.preset)


def extractor_label(spec: ComponentRef, extractor: FeatureExtractor) -> str:
    """Suffix for metric keys: empty for a standard extractor, ``@<name>`` otherwise."""
    return "" if extractor.standard else f"@{spec.preset or spec.name}"


@torch.no_grad()
def featurize_batches(extractor: FeatureExtractor, batches: Iterable[torch.Tensor]) -> Iterator[Features]:
    """Run ``extractor`` over image batches, one :class:`Features` (on the CPU) per batch."""
    device = next(extractor.parameters()).device
    for images in batches:
        features = extractor(images.to(device))
        yield Features(*(None if value is None else value.cpu()
                         for value in (features.pool, features.logits, features.spatial)))


def featurize(extractor: FeatureExtractor, batches: Iterable[torch.Tensor]) -> Features:
    """Run ``extractor`` over image batches and concatenate (features on CPU)."""
    parts = list(featurize_batches(extractor, batches))
    if not parts:
        raise ValueError("no images to featurise")
    return Features(*(None if getattr(parts[0], name) is None else torch.cat([part.field(name) for part in parts])
                      for name in ("pool", "logits", "spatial")))
