"""Properties of the DiT layout helpers over random sizes (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from rae_denoisers.layers import AxialRoPE2D
from rae_framework.nn import unpatchify


@settings(max_examples=15, deadline=None)
@given(channels=st.integers(1, 4), side=st.integers(1, 4), patch=st.integers(1, 3))
def test_unpatchify_inverts_channel_fastest_patch_flattening(channels, side, patch):
    image = torch.randn(2, channels, side * patch, side * patch)
    # (B, C, h, p, w, p) -> (B, h, w, py, px, C) -> (B, h*w, p*p*C): the layout the final layer predicts
    tokens = image.reshape(2, channels, side, patch, side, patch).permute(0, 2, 4, 3, 5, 1)
    tokens = tokens.reshape(2, side * side, patch * patch * channels)
    assert torch.equal(unpatchify(tokens, patch_size=patch, channels=channels), image)


@settings(max_examples=15, deadline=None)
@given(grid=st.integers(2, 5), quarter=st.integers(1, 4), data=st.data())
def test_rope_scores_are_translation_invariant(grid, quarter, data):
    head_dim = 4 * quarter
    rope = AxialRoPE2D(head_dim, grid)
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 16)))
    q, k = torch.randn(2, head_dim, generator=generator, dtype=torch.float64).float()
    rotated_q = rope(q.expand(1, 1, grid * grid, head_dim))[0, 0]  # (N, hd): q placed at every token
    rotated_k = rope(k.expand(1, 1, grid * grid, head_dim))[0, 0]
    row, col = data.draw(st.integers(0, grid - 2)), data.draw(st.integers(0, grid - 2))
    d_row, d_col = data.draw(st.integers(0, grid - 1 - row)), data.draw(st.integers(0, grid - 1 - col))
    shifted = rotated_q[0] @ rotated_k[d_row * grid + d_col]  # from (0, 0) by the offset
    moved = rotated_q[row * grid + col] @ rotated_k[(row + d_row) * grid + col + d_col]
    torch.testing.assert_close(shifted, moved, atol=1e-4, rtol=1e-4)
