"""The encoder: a real (if simple) frozen representation encoder implementing rae-framework's interface."""

import torch
import torch.nn.functional as F

from rae_framework.errors import ConfigError
from rae_framework.interfaces import Encoder
from rae_patch_mean.configs import PatchMeanConfig


class PatchMeanEncoder(Encoder):
    """``(B, 3, S, S)`` -> ``(B, (S/p)^2, C)``: patches times a fixed Gaussian matrix, then parameter-free LN."""

    Config = PatchMeanConfig

    def __init__(self, config: PatchMeanConfig) -> None:
        super().__init__(config)
        if config.input_size % config.patch_size:
            raise ConfigError(f"input_size {config.input_size} is not a multiple of patch_size {config.patch_size}")
        self.input_size, self.patch_size, self.token_dim = config.input_size, config.patch_size, config.token_dim
        self.num_prefix_tokens = 0
        self.image_mean, self.image_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        fan_in = 3 * config.patch_size**2
        generator = torch.Generator().manual_seed(config.seed)
        self.register_buffer("projection", torch.randn(fan_in, config.token_dim, generator=generator) / fan_in**0.5)
        self.eval()

    def train(self, mode: bool = True) -> "PatchMeanEncoder":
        """Frozen: stays in eval mode whatever the parent module does."""
        return super().train(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``(B, 3, S, S)`` -> tokens ``(B, N, C)`` in row-major order."""
        patches = F.unfold(pixels, kernel_size=self.patch_size, stride=self.patch_size)  # (B, 3 p p, N)
        tokens = patches.transpose(1, 2) @ self.projection  # (B, N, C)
        return F.layer_norm(tokens, (self.token_dim,))
