"""Attention backends: sdpa numerics, the xformers error path on CPU and the logged 'auto' fallback."""

from __future__ import annotations

import logging

import pytest
import torch

from rae_framework import build
from rae_framework.errors import RAEError

from rae_denoisers.attention import AttentionBackend, SelfAttention, xformers_unavailable_reason
from rae_denoisers.layers import AxialRoPE2D


def qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 3, 5, 8, generator=generator) for _ in range(3))  # (B, heads, N, hd)


def test_sdpa_is_softmax_attention_with_head_dim_scale():
    q, k, v = qkv()
    expected = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1) @ v
    torch.testing.assert_close(AttentionBackend("sdpa")(q, k, v), expected, atol=1e-6, rtol=1e-5)


def test_xformers_on_cpu_is_a_clear_error():
    q, k, v = qkv()
    assert "CUDA" in xformers_unavailable_reason(q)
    with pytest.raises(RAEError, match="xformers.*needs CUDA tensors.*cpu"):
        AttentionBackend("xformers")(q, k, v)


def test_auto_falls_back_to_sdpa_on_cpu_and_logs_once(caplog):
    q, k, v = qkv()
    backend = AttentionBackend("auto")
    with caplog.at_level(logging.INFO, logger="rae_denoisers.attention"):
        out = backend(q, k, v)
        backend(q, k, v)
    torch.testing.assert_close(out, AttentionBackend("sdpa")(q, k, v))
    assert backend.resolve(q) == "sdpa"
    assert sum("falls back to sdpa" in record.message for record in caplog.records) == 1


def test_unknown_backend_is_rejected():
    with pytest.raises(RAEError, match="Unknown attention backend 'flash'"):
        AttentionBackend("flash")


def test_model_configured_for_xformers_fails_clearly_on_cpu():
    model = build("denoiser", "dit-dh", preset="dit-dh-tiny", params={"attention": "xformers"})
    x = torch.randn(1, 8, 4, 4)
    with pytest.raises(RAEError, match="xformers"):
        model(x, torch.rand(1), torch.zeros(1, dtype=torch.long))


def test_blocks_share_one_backend_instance():
    model = build("denoiser", "lightning-dit", preset="lightning-dit-tiny", params={"attention": "auto"})
    backends = {id(block.attn.backend) for block in model.blocks}
    assert backends == {id(model.attention_backend)}


def test_self_attention_qkv_layout_and_rope():
    """Fused qkv channels are [3][heads][head_dim]; RoPE rotates q and k, not v."""
    torch.manual_seed(0)
    dim, heads, tokens = 16, 2, 4
    attention = SelfAttention(dim, heads, AttentionBackend("sdpa"), use_qknorm=False, use_rmsnorm=True)
    rope = AxialRoPE2D(dim // heads, 2)
    x = torch.randn(1, tokens, dim)
    q, k, v = attention.qkv(x).reshape(1, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q, k = rope(q), rope(k)
    weights = torch.softmax(q @ k.transpose(-2, -1) / (dim // heads) ** 0.5, dim=-1)
    expected = attention.proj((weights @ v).transpose(1, 2).reshape(1, tokens, dim))
    torch.testing.assert_close(attention(x, rope), expected, atol=1e-6, rtol=1e-5)
