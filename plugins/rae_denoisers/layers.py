"""Building blocks shared by the DiT denoisers.

Module and parameter names follow the reference implementation (bytetriper/RAE) so that its state
dicts load with an identity key map: ``w12``/``w3`` (SwiGLU), ``fc1``/``fc2`` (GELU MLP),
``proj`` (patch embedding), ``W`` and ``mlp`` (time embedder), ``embedding_table`` (labels),
``freqs_cos``/``freqs_sin`` (RoPE).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from rae_framework.conditioning import Conditioning
from rae_framework.nn import sincos_pos_embed

FOURIER_FEATURES = 256  # size of the Gaussian-Fourier frequency vector W


class RMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps) * weight``, normalised in float32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def make_norm(dim: int, use_rmsnorm: bool) -> nn.Module:
    """The block norm: RMSNorm, or LayerNorm without affine (eps 1e-6), as in the reference."""
    return RMSNorm(dim) if use_rmsnorm else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def make_qk_norm(head_dim: int, use_qknorm: bool, use_rmsnorm: bool) -> nn.Module:
    """Per-head q/k norm: RMSNorm, or an affine LayerNorm (torch default eps) as in the reference."""
    if not use_qknorm:
        return nn.Identity()
    return RMSNorm(head_dim) if use_rmsnorm else nn.LayerNorm(head_dim)


class SwiGLU(nn.Module):
    """``w3(silu(a) * b)`` with ``[a, b] = w12(x)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)  # (B, N, hidden) each
        return self.w3(F.silu(a) * b)


class GeluMLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))`` (timm ``Mlp`` layout)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def make_mlp(dim: int, mlp_ratio: float, use_swiglu: bool) -> nn.Module:
    """SwiGLU with hidden ``int(2/3 * int(mlp_ratio * d))`` (the reference's arithmetic), else a GELU MLP."""
    hidden = int(dim * mlp_ratio)
    return SwiGLU(dim, int(2 / 3 * hidden)) if use_swiglu else GeluMLP(dim, hidden)


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift``; ``shift=None`` is the no-shift variant."""
    x = x * (1 + scale)
    return x if shift is None else x + shift


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` -> ``(B, (H/p)(W/p), D)`` row-major tokens by a p x p stride-p convolution."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


def frozen_pos_embed(dim: int, grid: int) -> nn.Parameter:
    """The sin-cos table ``(1, grid*grid, dim)`` as a frozen parameter (counted and stored like the reference's)."""
    return nn.Parameter(sincos_pos_embed(dim, grid)[None], requires_grad=False)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Maps each interleaved channel pair ``(a, b)`` to ``(-b, a)``."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., hd/2, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class AxialRoPE2D(nn.Module):
    """EVA-02-style 2-D axial rotary embedding for a square ``grid`` of row-major tokens.

    With head dim ``hd`` there are ``hd/4`` frequencies ``10000^(-2k/(hd/2))``, each used for an
    interleaved channel pair; the first ``hd/2`` channels rotate by row index, the last by column index.
    """

    def __init__(self, head_dim: int, grid: int, theta: float = 10000.0) -> None:
        super().__init__()
        half = head_dim // 2
        freqs = 1.0 / (theta ** (torch.arange(0, half, 2)[: half // 2].float() / half))  # (hd/4,)
        positions = torch.arange(grid) / grid * grid  # float32, as the reference computes it
        angles = (positions[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)  # (grid, hd/2)
        table = torch.cat([angles[:, None, :].expand(grid, grid, half),
                           angles[None, :, :].expand(grid, grid, half)], dim=-1)  # (grid, grid, hd)
        self.register_buffer("freqs_cos", table.cos().reshape(grid * grid, head_dim))
        self.register_buffer("freqs_sin", table.sin().reshape(grid * grid, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, heads, N, hd)`` -> rotated, same shape."""
        return x * self.freqs_cos + rotate_pairs(x) * self.freqs_sin


class GaussianFourierEmbedder(nn.Module):
    """``t (B,)`` in [0, 1] -> ``mlp([sin(2 pi t W), cos(2 pi t W)])`` of shape ``(B, D)``.

    ``W`` (random normal frequencies) is a frozen parameter, as in the reference: it is part of the state
    dict (always load it, never resample it) and of the parameter count, but is not trained.
    """

    def __init__(self, dim: int, features: int = FOURIER_FEATURES) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(features), requires_grad=False)
        self.mlp = nn.Sequential(nn.Linear(2 * features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.W[None, :] * 2 * torch.pi  # (B, features), the reference's op order
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))  # (B, D)


class LabelEmbedder(nn.Module):
    """Class labels -> ``(B, D)``; in train mode labels are replaced by the null id with ``dropout_prob``.

    The table has a null row (id ``num_classes``) only when ``dropout_prob > 0``, as in the reference.
    """

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_prob > 0:
            dropped = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob  # (B,)
            labels = torch.where(dropped, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


def projection(in_dim: int, width: int) -> nn.Sequential:
    """``Linear -> GELU-tanh -> Linear`` from a conditioner's width to the model's (PixArt-alpha's caption
    projection; Scale-RAE projects with one Linear, ``scale_rae_qwen2.py:454``)."""
    return nn.Sequential(nn.Linear(in_dim, width), nn.GELU(approximate="tanh"), nn.Linear(width, width))


class TextEmbedder(nn.Module):
    """A text Conditioning -> ``(pooled (B, D) | None, tokens (B, L, D) | None, mask (B, L) | None)`` at the model
    width ``D``.

    With ``learned_null``, the rows flagged null are replaced before projecting by learned embeddings
    (zero-initialised, as Scale-RAE's ``dropout_embedding``): one null token (the only real one of its row)
    and a null pooled vector; otherwise the null rows are whatever the conditioner encoded (the empty prompt).
    """

    def __init__(self, text_dim: int | None, pooled_dim: int | None, width: int, learned_null: bool) -> None:
        super().__init__()
        self.learned_null = learned_null
        self.token_proj = projection(text_dim, width) if text_dim else None
        self.pooled_proj = projection(pooled_dim, width) if pooled_dim else None
        if learned_null and text_dim:
            self.null_token = nn.Parameter(torch.zeros(text_dim))
        if learned_null and pooled_dim:
            self.null_pooled = nn.Parameter(torch.zeros(pooled_dim))

    def forward(self, condition: Conditioning) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                                        torch.Tensor | None]:
        pooled, tokens, mask = self._inputs(condition)
        pooled = self.pooled_proj(pooled) if self.pooled_proj is not None else None  # (B, D)
        tokens = self.token_proj(tokens) if self.token_proj is not None else None  # (B, L, D)
        return pooled, tokens, mask if tokens is not None else None

    def _inputs(self, condition: Conditioning) -> tuple[torch.Tensor | None, ...]:
        """The conditioner's pooled/tokens/mask, null rows swapped for the learned null when configured."""
        if self.token_proj is not None and condition.tokens is None:
            raise ValueError("this denoiser's text path needs Conditioning.tokens (a text conditioner's output)")
        if self.pooled_proj is not None and condition.pooled is None:
            raise ValueError("this denoiser's text path needs Conditioning.pooled (a text conditioner's output)")
        pooled, tokens, mask = condition.pooled, condition.tokens, condition.mask
        if not self.learned_null or condition.null is None:
            return pooled, tokens, mask
        rows = condition.null  # (B,) bool
        if pooled is not None and self.pooled_proj is not None:
            pooled = torch.where(rows[:, None], self.null_pooled.to(pooled.dtype), pooled)
        if tokens is not None and self.token_proj is not None:
            tokens = torch.where(rows[:, None, None], self.null_token.to(tokens.dtype), tokens)
            only_first = torch.arange(mask.shape[1], device=mask.device) == 0  # (L,)
            mask = torch.where(rows[:, None], only_first[None, :], mask)
        return pooled, tokens, mask
