"""Small test doubles implementing the framework's interfaces, for fast engine tests on CPU.

Importable from subprocesses (the SIGKILL and DDP tests put this folder on ``sys.path``).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from rae_framework.config import ComponentConfig
from rae_framework.interfaces import Decoder, Denoiser, Encoder, NoiseSchedule, SampleResult, Sampler


class DenoiserDoubleConfig(ComponentConfig):
    """Sizes of :class:`TinyDenoiser`."""

    in_channels: int = Field(4, description="Latent channels.")
    input_size: int = Field(4, description="Latent side.")
    num_classes: int = Field(10, description="Classes; null label = num_classes.")
    class_dropout_prob: float = Field(0.1, description="Own label dropout in train mode.")
    width: int = Field(32, description="Hidden width.")


class TinyDenoiser(Denoiser):
    """Conv net conditioned on time and class by a per-channel bias."""

    Config = DenoiserDoubleConfig

    def __init__(self, config: DenoiserDoubleConfig) -> None:
        super().__init__(config)
        self.in_channels, self.input_size, self.num_classes = config.in_channels, config.input_size, config.num_classes
        self.embed = nn.Embedding(config.num_classes + 1, config.width)
        self.time = nn.Linear(1, config.width)
        self.inp = nn.Conv2d(config.in_channels, config.width, 3, padding=1)
        self.out = nn.Conv2d(config.width, config.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.class_dropout_prob > 0:
            drop = torch.rand(y.shape[0], device=y.device) < self.config.class_dropout_prob
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        condition = self.embed(y) + self.time(t[:, None].to(x.dtype))  # (B, W)
        return self.out(torch.nn.functional.silu(self.inp(x) + condition[:, :, None, None]))


class ScheduleDoubleConfig(ComponentConfig):
    """No parameters."""


class LinearSchedule(NoiseSchedule):
    """Uniform training times, linear path, uniform sampling grid."""

    Config = ScheduleDoubleConfig

    def __init__(self, config: ScheduleDoubleConfig | None = None) -> None:
        super().__init__(config or ScheduleDoubleConfig())

    def sample_time(self, batch_size, generator=None, device="cpu"):
        return torch.rand(batch_size, generator=generator, device=device)

    def interpolate(self, x, noise, t):
        t = t.view(-1, *([1] * (x.dim() - 1)))
        return (1 - t) * x + t * noise

    def velocity_target(self, x, noise):
        return noise - x

    def sampling_grid(self, num_steps):
        return torch.linspace(1.0, 0.0, num_steps + 1)[:-1]


class EulerDouble(Sampler):
    """Euler steps on the schedule's grid down to t = 0."""

    Config = ScheduleDoubleConfig

    def __init__(self, config: ScheduleDoubleConfig | None = None, steps: int = 4) -> None:
        super().__init__(config or ScheduleDoubleConfig())
        self.steps = steps

    def sample(self, velocity, noise, schedule, *, generator=None, return_trajectory=False):
        grid = torch.cat([schedule.sampling_grid(self.steps), torch.zeros(1)])
        x = noise
        for t0, t1 in zip(grid[:-1], grid[1:]):
            x = x + (t1 - t0) * velocity(x, torch.full((x.shape[0],), float(t0)))
        return SampleResult(x, self.steps)


class CoderDoubleConfig(ComponentConfig):
    """Sizes of the tiny encoder/decoder."""

    token_dim: int = Field(4, description="Token channels.")
    patch_size: int = Field(4, description="Patch side.")
    input_size: int = Field(16, description="Image side.")


class TinyEncoder(Encoder):
    """A frozen random patch embedding."""

    Config = CoderDoubleConfig

    def __init__(self, config: CoderDoubleConfig | None = None) -> None:
        super().__init__(config or CoderDoubleConfig())
        c = self.config
        self.input_size, self.patch_size, self.token_dim, self.num_prefix_tokens = c.input_size, c.patch_size, c.token_dim, 0
        self.image_mean, self.image_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        self.proj = nn.Conv2d(3, c.token_dim, c.patch_size, stride=c.patch_size)

    def forward(self, pixels):
        return self.proj(pixels).flatten(2).transpose(1, 2)  # (B, N, C)


class TinyDecoder(Decoder):
    """Linear token -> patch pixels."""

    Config = CoderDoubleConfig

    def __init__(self, config: CoderDoubleConfig | None = None) -> None:
        super().__init__(config or CoderDoubleConfig())
        c = self.config
        self.token_dim, self.patch_size, self.out_channels = c.token_dim, c.patch_size, 3
        self.hidden = nn.Linear(c.token_dim, 32)
        self.pred = nn.Linear(32, 3 * c.patch_size ** 2)

    def forward(self, tokens):
        b, n, _ = tokens.shape
        side, p = int(n ** 0.5), self.patch_size
        patches = self.pred(torch.nn.functional.gelu(self.hidden(tokens)))  # (B, N, 3 p p)
        patches = patches.view(b, side, side, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return patches.reshape(b, 3, side * p, side * p)

    @property
    def last_layer_weight(self):
        return self.pred.weight


def tiny_rae(noise_tau: float = 0.5):
    """The framework's RAE around the tiny encoder/decoder."""
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.config import AutoencoderConfig

    return RepresentationAutoencoder(TinyEncoder(), TinyDecoder(), AutoencoderConfig(noise_tau=noise_tau))


class Discriminator(nn.Module):
    """Tiny conv discriminator."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3))

    def forward(self, images):
        return self.net(images)
