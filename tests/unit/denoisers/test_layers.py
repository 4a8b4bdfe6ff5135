"""Layer semantics of the DiT building blocks, checked against the reference conventions written out."""

from __future__ import annotations

import math

import pytest
import torch

from rae_denoisers.layers import (
    AxialRoPE2D,
    GaussianFourierEmbedder,
    LabelEmbedder,
    PatchEmbed,
    RMSNorm,
    make_mlp,
    modulate,
    rotate_pairs,
)


def test_rmsnorm_formula():
    torch.manual_seed(0)
    norm = RMSNorm(6)
    norm.weight.data = torch.arange(1.0, 7.0)
    x = torch.randn(2, 3, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)


@pytest.mark.parametrize(("dim", "hidden"), [(64, 170), (96, 256), (384, 1024), (1152, 3072), (2048, 5461)])
def test_swiglu_hidden_size_follows_the_reference_arithmetic(dim, hidden):
    with torch.device("meta"):
        mlp = make_mlp(dim, 4.0, use_swiglu=True)
    assert tuple(mlp.w12.weight.shape) == (2 * hidden, dim)
    assert tuple(mlp.w3.weight.shape) == (dim, hidden)


def test_gelu_mlp_uses_the_full_ratio():
    mlp = make_mlp(8, 4.0, use_swiglu=False)
    assert tuple(mlp.fc1.weight.shape) == (32, 8)
    x = torch.randn(3, 8)
    expected = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x), approximate="tanh"))
    torch.testing.assert_close(mlp(x), expected)


def test_modulate_with_and_without_shift():
    x, shift, scale = torch.randn(3, 2, 4).unbind(0)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale) + shift)
    torch.testing.assert_close(modulate(x, None, scale), x * (1 + scale))


def test_rotate_pairs_maps_a_b_to_minus_b_a():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(rotate_pairs(x), torch.tensor([-2.0, 1.0, -4.0, 3.0]))


def test_rope_rotates_first_half_by_row_and_second_half_by_column():
    head_dim, grid = 8, 3
    rope = AxialRoPE2D(head_dim, grid)
    freqs = 10000.0 ** (-2 * torch.arange(head_dim // 4) / (head_dim / 2))  # (hd/4,)
    row, col = 2, 1
    x = torch.zeros(1, 1, grid * grid, head_dim)
    x[..., 0] = 1.0  # first pair of the row half
    x[..., head_dim // 2] = 1.0  # first pair of the column half
    out = rope(x)[0, 0, row * grid + col]
    angle_row, angle_col = row * freqs[0], col * freqs[0]
    torch.testing.assert_close(out[:2], torch.stack([torch.cos(angle_row), torch.sin(angle_row)]))
    half = head_dim // 2
    torch.testing.assert_close(out[half: half + 2], torch.stack([torch.cos(angle_col), torch.sin(angle_col)]))


def test_rope_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    rope = AxialRoPE2D(16, 4)
    q, k = torch.randn(2, 16)
    rotated_q = rope(q.expand(1, 1, 16, 16))[0, 0]  # the same q at every token
    rotated_k = rope(k.expand(1, 1, 16, 16))[0, 0]
    score = lambda a, b: rotated_q[a] @ rotated_k[b]  # noqa: E731
    # token (0,0)->(1,2) and (2,1)->(3,3) share the offset (1, 2)
    torch.testing.assert_close(score(0, 1 * 4 + 2), score(2 * 4 + 1, 3 * 4 + 3), atol=1e-5, rtol=1e-5)


def test_patch_embed_tokens_are_row_major():
    embed = PatchEmbed(1, 1, 1)
    embed.proj.weight.data.fill_(1.0)
    embed.proj.bias.data.zero_()
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert embed(x).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_fourier_embedder_features():
    torch.manual_seed(0)
    embedder = GaussianFourierEmbedder(8)
    assert not embedder.W.requires_grad and "W" in embedder.state_dict()
    t = torch.tensor([0.0, 0.3])
    angles = t[:, None] * embedder.W[None] * 2 * math.pi
    expected = embedder.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))
    torch.testing.assert_close(embedder(t), expected)


def test_label_dropout_only_in_train_mode():
    embedder = LabelEmbedder(num_classes=5, dim=4, dropout_prob=0.5)
    labels = torch.zeros(4000, dtype=torch.long)
    null = embedder.embedding_table.weight[5]
    embedder.eval()
    assert not (embedder(labels) == null).all(-1).any()
    embedder.train()
    torch.manual_seed(0)
    dropped = (embedder(labels) == null).all(-1).float().mean().item()
    assert 0.45 < dropped < 0.55


def test_label_table_has_a_null_row_only_with_dropout():
    assert LabelEmbedder(7, 4, 0.1).embedding_table.num_embeddings == 8
    assert LabelEmbedder(7, 4, 0.0).embedding_table.num_embeddings == 7
