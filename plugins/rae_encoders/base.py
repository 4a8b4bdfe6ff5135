"""The frozen-encoder base shared by this plugin's encoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rae_framework import ensure_torchvision_importable
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Encoder
from rae_encoders.configs import EncoderConfig


def standardize(tokens: torch.Tensor, eps: float) -> torch.Tensor:
    """The final LayerNorm without affine parameters: per-token ``(x - mean) / sqrt(var + eps)``."""
    return F.layer_norm(tokens, tokens.shape[-1:], eps=eps)


class FrozenEncoder(Encoder):
    """An encoder whose parameters never train: ``requires_grad`` off and eval mode, whatever its parent does."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        ensure_torchvision_importable()  # before a subclass imports transformers / timm / open_clip
        self.input_size, self.patch_size, self.token_dim = config.input_size, config.patch_size, config.token_dim
        self.image_mean, self.image_std = tuple(config.image_mean), tuple(config.image_std)
        if config.input_size % config.patch_size:
            raise ConfigError(f"encoder input_size {config.input_size} is not a multiple of the patch size "
                              f"{config.patch_size}")

    def freeze(self) -> None:
        """Turn gradients off and switch to eval mode (call at the end of a subclass constructor)."""
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Always eval mode: a frozen encoder has no training behaviour (dropout, masking)."""
        return super().train(False)

    def check_built(self, token_dim: int, patch_size: int) -> None:
        """The built model must have the width and patch size the config promised (the latent shape)."""
        if (token_dim, patch_size) != (self.token_dim, self.patch_size):
            raise ConfigError(f"{type(self).__name__}: the built model has token dim {token_dim} and patch "
                              f"{patch_size}, the config says {self.token_dim} and {self.patch_size}")
