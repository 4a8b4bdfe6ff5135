"""Self-attention for the DiTs and the choice of its kernel (the attention backend).

Backends: ``sdpa`` (``torch.nn.functional.scaled_dot_product_attention``, every device), ``xformers``
(``xformers.ops.memory_efficient_attention``, CUDA tensors only: anything else is a clear
:class:`RAEError`) and ``auto`` (xformers where it can run, else sdpa, with the fallback logged once).
"""

from __future__ import annotations

import importlib
import logging

import torch
from torch import nn
import torch.nn.functional as F

from rae_framework.errors import RAEError

from rae_denoisers.layers import AxialRoPE2D, make_qk_norm

LOGGER = logging.getLogger(__name__)


def xformers_unavailable_reason(tensor: torch.Tensor) -> str | None:
    """Why xformers' memory-efficient attention cannot run on ``tensor``; None when it can be tried."""
    if tensor.device.type != "cuda":
        return f"xformers memory_efficient_attention needs CUDA tensors, got device '{tensor.device.type}'"
    try:
        importlib.import_module("xformers.ops")
    except ImportError as error:
        return f"xformers is not importable ({error})"
    return None


def key_padding_bias(mask: torch.Tensor, queries: int, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """``mask (B, L)`` bool (True = attend) -> additive bias ``(B, heads, N, L)`` (0 or -inf) for xformers,
    allocated with its last dim padded to a multiple of 8 (xformers' alignment rule for a bias) and sliced."""
    batch, length = mask.shape
    padded = -(-length // 8) * 8
    bias = torch.zeros(batch, heads, queries, padded, dtype=dtype, device=mask.device)[..., :length]
    return bias.masked_fill_(~mask[:, None, None, :], float("-inf"))  # in place: keeps the aligned storage


def xformers_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, heads, N, hd)`` q and ``(B, heads, L, hd)`` k, v (``mask (B, L)`` bool: keys to attend) ->
    ``(B, heads, N, hd)`` through xformers (layout ``(B, N, heads, hd)``)."""
    ops = importlib.import_module("xformers.ops")
    bias = None if mask is None else key_padding_bias(mask, q.shape[2], q.shape[1], q.dtype)
    q, k, v = (tensor.transpose(1, 2) for tensor in (q, k, v))  # (B, N, heads, hd)
    try:
        out = ops.memory_efficient_attention(q, k, v, attn_bias=bias)
    except NotImplementedError as error:
        raise RAEError(f"xformers has no kernel for these inputs ({q.dtype}, head dim {q.shape[-1]}, "
                       f"{q.device}): {error}") from error
    return out.transpose(1, 2)  # (B, heads, N, hd)


class AttentionBackend:
    """Runs softmax attention with the configured kernel; one instance is shared by a model's blocks.

    ``auto`` decides per device type on first use and remembers the decision (logging a fallback once).
    """

    def __init__(self, name: str) -> None:
        if name not in ("sdpa", "xformers", "auto"):
            raise RAEError(f"Unknown attention backend '{name}'; use 'sdpa', 'xformers' or 'auto'")
        self.name = name
        self._decisions: dict[str, str] = {}

    def resolve(self, tensor: torch.Tensor) -> str:
        """The concrete kernel (``sdpa`` or ``xformers``) for tensors like ``tensor``."""
        if self.name != "auto":
            return self.name
        device = tensor.device.type
        if device not in self._decisions:
            reason = xformers_unavailable_reason(tensor)
            self._decisions[device] = "sdpa" if reason else "xformers"
            if reason:
                LOGGER.info("attention 'auto' falls back to sdpa: %s", reason)
        return self._decisions[device]

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """q ``(B, heads, N, hd)``, k and v ``(B, heads, L, hd)`` -> ``softmax(q k^T / sqrt(hd)) v`` ``(B, heads,
        N, hd)``; ``mask (B, L)`` bool restricts every query to the keys marked True (key padding)."""
        if self.resolve(q) == "sdpa":
            attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        reason = xformers_unavailable_reason(q)
        if reason:
            raise RAEError(f"attention backend 'xformers' cannot run: {reason}. "
                           f"Use attention: sdpa (or auto) on this device.")
        return xformers_attention(q, k, v, mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection, optional q/k norm and 2-D RoPE.

    The ``qkv`` output channels are laid out ``[3 (q, k, v)][heads][head_dim]`` (the reference layout).
    """

    def __init__(self, dim: int, num_heads: int, backend: AttentionBackend, *, use_qknorm: bool,
                 use_rmsnorm: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.backend = backend
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = make_qk_norm(head_dim, use_qknorm, use_rmsnorm)
        self.k_norm = make_qk_norm(head_dim, use_qknorm, use_rmsnorm)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: AxialRoPE2D | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, hd) each
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q).to(v.dtype), rope(k).to(v.dtype)  # the fp32 tables may promote under autocast
        out = self.backend(q, k, v)  # (B, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class CrossAttention(nn.Module):
    """Multi-head attention of the image tokens (queries) over condition tokens (keys and values) with a key
    padding mask; a sample with no real token gets zero (nothing to attend to). Zero-initialised output
    projection, so a block with it starts as the block without it (PixArt-alpha's text cross attention)."""

    def __init__(self, dim: int, num_heads: int, backend: AttentionBackend, *, use_qknorm: bool,
                 use_rmsnorm: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.backend = backend
        head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = make_qk_norm(head_dim, use_qknorm, use_rmsnorm)
        self.k_norm = make_qk_norm(head_dim, use_qknorm, use_rmsnorm)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, N, D)``, ``context (B, L, D)``, ``mask (B, L)`` bool -> ``(B, N, D)``."""
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q_norm(self.q(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2))  # (B, h, N, hd)
        kv = self.kv(context).reshape(batch, context.shape[1], 2, self.num_heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, L, hd) each
        has_keys = mask.any(dim=-1)  # (B,)
        out = self.backend(q, self.k_norm(k).to(v.dtype), v, mask | ~has_keys[:, None])  # (B, h, N, hd)
        out = out * has_keys[:, None, None, None].to(out.dtype)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
