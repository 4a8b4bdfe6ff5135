"""The MAE-style ViT pixel decoder (the reference's ``GeneralDecoder``).

tokens (B, N, C) -> linear to width D -> (bilinear resize of the token grid if N differs from the grid the
decoder was built for) -> learned CLS slot prepended -> + 2-D sin-cos positions -> pre-LN blocks ->
LayerNorm -> linear to p*p*3 pixels per token -> drop CLS -> unpatchify (channel fastest).
The output lives in the encoder's normalised pixel space; the autoencoder undoes mean/std.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rae_framework.errors import ConfigError
from rae_framework.interfaces import Decoder
from rae_framework.nn import sincos_pos_embed, unpatchify
from rae_decoders.configs import ViTDecoderConfig


def resize_token_grid(tokens: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Bilinearly resize a square row-major token grid ``(B, N, D)`` to ``num_tokens`` tokens."""
    batch, count, dim = tokens.shape
    if count == num_tokens:
        return tokens
    side, target = math.isqrt(count), math.isqrt(num_tokens)
    grid = tokens.reshape(batch, side, side, dim).permute(0, 3, 1, 2)  # (B, D, h, w)
    grid = F.interpolate(grid, size=(target, target), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(batch, num_tokens, dim)


class Attention(nn.Module):
    """Multi-head softmax self-attention with a fused qkv projection (layout [3][heads][head_dim])."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, count, dim = x.shape
        qkv = self.qkv(x).reshape(batch, count, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, hd)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, hd), scale hd^-0.5
        return self.proj(out.transpose(1, 2).reshape(batch, count, dim))


class Block(nn.Module):
    """Pre-LN transformer block: ``x += attn(LN x)``; ``x += fc2(GELU(fc1(LN x)))`` (exact erf GELU)."""

    def __init__(self, config: ViTDecoderConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def _check(config: ViTDecoderConfig) -> None:
    if config.token_dim is None or config.num_patches is None:
        raise ConfigError("decoder 'vit' needs token_dim and num_patches (an assembly fills them from the encoder)")
    if math.isqrt(config.num_patches) ** 2 != config.num_patches:
        raise ConfigError(f"decoder 'vit': num_patches {config.num_patches} is not a square")
    if config.hidden_size % config.num_heads:
        raise ConfigError(f"decoder 'vit': hidden_size {config.hidden_size} is not divisible by "
                          f"num_heads {config.num_heads}")


class ViTDecoder(Decoder):
    """Tokens ``(B, N, C)`` -> pixels ``(B, 3, p*sqrt(M), p*sqrt(M))`` where M = ``num_patches``."""

    Config = ViTDecoderConfig

    def __init__(self, config: ViTDecoderConfig) -> None:
        super().__init__(config)
        _check(config)
        self.token_dim, self.patch_size, self.out_channels = config.token_dim, config.patch_size, config.out_channels
        self.num_patches = config.num_patches
        dim = config.hidden_size
        self.embed = nn.Linear(config.token_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed sin-cos values in a frozen Parameter, as the reference (src/stage1/decoders/decoder.py:546-548,
        # requires_grad=False): checkpoints carry it, training leaves it, and diffusers' AutoencoderRAE (which
        # regenerates the table instead of loading it) computes what this decoder computes.
        table = sincos_pos_embed(dim, config.grid_size, cls_token=True)[None]  # (1, 1 + M, D)
        self.pos_embed = nn.Parameter(table, requires_grad=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.patch_size ** 2 * config.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE-style init: xavier-uniform linears with zero bias, N(0, 0.02) CLS slot."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.cls_token, std=0.02)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The pixel head's weight ``(p*p*3, D)``."""
        return self.head.weight

    def forward_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` -> per-token pixel logits ``(B, M, p*p*3)`` (before unpatchify)."""
        x = resize_token_grid(self.embed(tokens), self.num_patches)  # (B, M, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1+M, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))[:, 1:]  # (B, M, p*p*3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` row-major tokens -> ``(B, 3, H, W)`` pixels in normalised space."""
        return unpatchify(self.forward_logits(tokens), patch_size=self.patch_size, channels=self.out_channels)
