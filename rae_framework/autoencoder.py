"""The Representation Autoencoder: a frozen representation encoder + a trained pixel decoder.

encode: image ``(B, 3, H, W)`` in [0, 1] -> resize to the encoder's input size (bicubic, align_corners=False,
antialias=False; skipped when already that size) -> ``(x - mean) / std`` -> encoder -> drop the prefix tokens
-> (train mode, ``noise_tau > 0``: ``+ tau * U(0,1) * N(0, I)``, one sigma per sample, on the tokens as the
reference does) -> ``(B, C, h, w)`` row-major -> ``(z - mu) / sqrt(var + eps)``.
decode: the inverse normalisation -> ``(B, N, C)`` -> decoder -> ``* std + mean`` (not clamped).

The module knows only the :class:`~rae_framework.interfaces.Encoder` / ``Decoder`` interfaces.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rae_framework.config import AutoencoderConfig, LatentShape
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Decoder, Encoder


def tokens_to_latent(tokens: torch.Tensor) -> torch.Tensor:
    """``(B, N, C)`` row-major tokens -> ``(B, C, h, w)`` with h = w = sqrt(N)."""
    batch, count, channels = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(batch, channels, side, side)


def latent_to_tokens(latent: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, h*w, C)`` row-major tokens."""
    batch, channels, height, width = latent.shape
    return latent.reshape(batch, channels, height * width).transpose(1, 2)


class RepresentationAutoencoder(nn.Module):
    """Encoder + decoder + latent normalisation; ``encode``, ``decode`` and ``forward`` (= reconstruction)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        if decoder.token_dim != encoder.token_dim:
            raise ConfigError(f"decoder token_dim {decoder.token_dim} != encoder token_dim {encoder.token_dim}")
        self.encoder, self.decoder = encoder, decoder
        self.register_buffer("image_mean", torch.tensor(encoder.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(encoder.image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("latent_mean", torch.zeros(self.latent_shape))
        self.register_buffer("latent_var", torch.ones(self.latent_shape))
        if self.config.statistics is not None:
            from rae_framework.engine.statistics import load_statistics

            self.set_statistics(*load_statistics(self.config.statistics))

    @property
    def latent_shape(self) -> LatentShape:
        """``(C, h, w)`` of the latents (:attr:`Encoder.latent_shape`)."""
        return self.encoder.latent_shape

    def set_statistics(self, mean: torch.Tensor | None = None, var: torch.Tensor | None = None) -> None:
        """Latent statistics, broadcast to ``latent_shape``; a missing mean is 0 and a missing var 1."""
        mean = torch.zeros(()) if mean is None else torch.as_tensor(mean)
        var = torch.ones(()) if var is None else torch.as_tensor(var)
        for name, value in (("mean", mean), ("var", var)):
            try:
                full = torch.broadcast_to(value.float(), self.latent_shape)
            except RuntimeError:
                raise ConfigError(f"latent {name} of shape {tuple(value.shape)} does not fit the latent shape "
                                  f"{self.latent_shape}") from None
            getattr(self, f"latent_{name}").copy_(full)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> the encoder's resized, normalised input."""
        size = self.encoder.input_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
        return (images - self.image_mean) / self.image_std

    def encode_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> patch tokens ``(B, N, C)`` (prefix tokens dropped, not normalised)."""
        tokens = self.encoder(self.preprocess(images))  # (B, P + N, C)
        return tokens[:, self.encoder.num_prefix_tokens:]

    def draw_noise(self, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit draws of the latent noise of ``batch`` samples, float32: ``U(0, 1)`` ``(B, 1, 1)`` (one per
        sample), then ``N(0, I)`` ``(B, N, C)``; on the generator's device. Drawing them per block of rows
        keeps stage 1 world-size invariant (:mod:`rae_framework.engine.draws`)."""
        device = generator.device if generator is not None else (device or self.latent_mean.device)
        channels, height, width = self.latent_shape
        sigma = torch.rand((batch, 1, 1), generator=generator, device=device)
        return sigma, torch.randn((batch, height * width, channels), generator=generator, device=device)

    def add_noise(self, tokens: torch.Tensor, generator: torch.Generator | None = None,
                  noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``z + tau * U(0, 1) * N(0, I)`` with one sigma per sample; ``noise`` = given :meth:`draw_noise`."""
        if noise is None:
            shape = (tokens.shape[0],) + (1,) * (tokens.dim() - 1)
            sigma = torch.rand(shape, generator=generator, device=tokens.device, dtype=tokens.dtype)
            draws = torch.randn(tokens.shape, generator=generator, device=tokens.device, dtype=tokens.dtype)
        else:
            sigma, draws = (value.to(tokens) for value in noise)
        return tokens + (self.config.noise_tau * sigma) * draws

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        """``(z - mean) / sqrt(var + eps)``."""
        return (latent - self.latent_mean) / torch.sqrt(self.latent_var + self.config.latent_eps)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        """``z * sqrt(var + eps) + mean``."""
        return latent * torch.sqrt(self.latent_var + self.config.latent_eps) + self.latent_mean

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None,
               noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> normalised latent ``(B, C, h, w)``; noised in train mode (from
        ``noise``, the :meth:`draw_noise` of these rows, when given, else from ``generator``)."""
        tokens = self.encode_tokens(images)  # (B, N, C)
        if self.training and self.config.noise_tau > 0:
            tokens = self.add_noise(tokens, generator, noise)
        return self.normalize(tokens_to_latent(tokens))

    def decode(self, latent: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        """Normalised latent ``(B, C, h, w)`` -> images ``(B, 3, H', W')`` (not clamped), with :attr:`decoder`
        or the given ``decoder`` (its DDP-wrapped form while training, its EMA copy for evaluation)."""
        tokens = latent_to_tokens(self.denormalize(latent))  # (B, N, C)
        pixels = (decoder or self.decoder)(tokens)  # (B, 3, H', W'), normalised space
        return pixels * self.image_std + self.image_mean

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction ``decode(encode(images))``."""
        return self.decode(self.encode(images, generator))
