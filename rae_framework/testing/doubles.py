"""Small, fast stand-ins used by the contract tests: a denoiser and a linear flow schedule.

They implement the public interfaces only, so that a sampler or a guidance is tested against the
interface contract rather than against one particular first-party component.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from rae_framework.config import ComponentConfig
from rae_framework.interfaces import Denoiser, NoiseSchedule


class TinyDenoiserConfig(ComponentConfig):
    """A 1x1-conv denoiser with time and (optionally) label conditioning."""

    in_channels: int = Field(4, gt=0, description="Latent channels C.")
    input_size: int = Field(4, gt=0, description="Latent side h (= w).")
    num_classes: int = Field(3, gt=0, description="Classes; the null label is num_classes.")
    use_labels: bool = Field(True, description="False: the output does not depend on the label.")


class TinyDenoiser(Denoiser):
    """``v = conv(x) * (1 + t) + embed(y)``: cheap, deterministic, every input matters."""

    Config = TinyDenoiserConfig

    def __init__(self, config: TinyDenoiserConfig) -> None:
        super().__init__(config)
        self.in_channels, self.input_size, self.num_classes = config.in_channels, config.input_size, config.num_classes
        self.proj = nn.Conv2d(config.in_channels, config.in_channels, 1)
        self.labels = nn.Embedding(config.num_classes + 1, config.in_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x (B, C, h, w)``, ``t (B,)``, ``y (B,)`` -> ``(B, C, h, w)``."""
        out = self.proj(x) * (1 + t.to(x.dtype))[:, None, None, None]  # (B, C, h, w)
        if self.config.use_labels:
            out = out + self.labels(y)[:, :, None, None]
        return out


class LinearScheduleConfig(ComponentConfig):
    """The unshifted linear path with uniform training times."""

    t_min: float = Field(1e-3, gt=0.0, lt=1.0, description="Last point of the sampling grid.")


class LinearSchedule(NoiseSchedule):
    """``x_t = (1 - t) x + t eps``, uniform times, grid ``linspace(1, t_min)``."""

    Config = LinearScheduleConfig

    def sample_time(self, batch_size: int, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform ``(B,)`` times."""
        return torch.rand(batch_size, generator=generator, device=device)

    def interpolate(self, x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(1 - t) x + t noise``."""
        t = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, 1, 1)
        return (1 - t) * x + t * noise

    def velocity_target(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``noise - x``."""
        return noise - x

    def sampling_grid(self, num_steps: int) -> torch.Tensor:
        """``(num_steps,)`` from 1 down to ``t_min``."""
        return torch.linspace(1.0, self.config.t_min, num_steps, dtype=torch.float32)
