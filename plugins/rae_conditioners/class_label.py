"""``class-label``: class labels passed through as ``Conditioning(labels=...)``.

The denoiser keeps its own label table (``y_embedder``; the null label is ``num_classes``), so state dicts,
official checkpoints and every draw of a class run are exactly those of the label path without a conditioner.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rae_conditioners.configs import ClassLabelConditionerConfig
from rae_framework.conditioning import Conditioning
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Conditioner


class ClassLabelConditioner(Conditioner):
    """Labels ``0 .. num_classes - 1`` -> ``Conditioning(labels)``; the null condition is the label
    ``num_classes``. No parameters."""

    Config = ClassLabelConditionerConfig
    input_kind = "labels"
    pooled_dim = None
    token_dim = None

    def __init__(self, config: ClassLabelConditionerConfig) -> None:
        super().__init__(config)
        self.num_classes = config.num_classes
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    def encode(self, conditions: Sequence[int] | torch.Tensor) -> Conditioning:
        """``B`` labels -> ``Conditioning(labels (B,) int64)``; a label outside the classes is a ConfigError."""
        if isinstance(conditions, str) or (len(conditions) and isinstance(list(conditions)[0], str)):
            raise ConfigError("the class-label conditioner takes class labels (ints), not prompts")
        labels = torch.as_tensor(conditions, dtype=torch.int64).reshape(-1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"class labels are 0 .. {self.num_classes - 1}, got {labels.tolist()}")
        return Conditioning(labels=labels.to(self._device_probe.device))

    def null(self, batch_size: int) -> Conditioning:
        """``batch_size`` rows of the null label ``num_classes``, flagged null."""
        labels = torch.full((batch_size,), self.num_classes, dtype=torch.int64, device=self._device_probe.device)
        return Conditioning(labels=labels, null=torch.ones(batch_size, dtype=torch.bool, device=labels.device))
