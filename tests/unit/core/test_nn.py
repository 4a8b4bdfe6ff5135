"""The shared tensor helpers of rae_framework.nn: position-table layout and unpatchify order."""

from __future__ import annotations

import torch

from rae_framework.nn import sincos_pos_embed, unpatchify


def test_sincos_first_half_encodes_columns_second_half_rows():
    dim, grid = 16, 3
    table = sincos_pos_embed(dim, grid)  # (9, 16)
    row, col = 1, 2
    token = table[row * grid + col]
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    expected_col = torch.cat([torch.sin(col * omega), torch.cos(col * omega)]).float()
    expected_row = torch.cat([torch.sin(row * omega), torch.cos(row * omega)]).float()
    assert table.dtype == torch.float32 and table.shape == (9, 16)
    torch.testing.assert_close(token[: dim // 2], expected_col)
    torch.testing.assert_close(token[dim // 2:], expected_row)


def test_cls_row_is_zero_and_precedes_the_same_table():
    table = sincos_pos_embed(8, 3, cls_token=True)  # (1 + 9, 8)
    assert torch.equal(table[0], torch.zeros(8))
    assert torch.equal(table[1:], sincos_pos_embed(8, 3))


def test_unpatchify_is_channel_fastest():
    batch, channels, side, p = 2, 3, 2, 2
    tokens = torch.randn(batch, side * side, p * p * channels)
    image = unpatchify(tokens, patch_size=p, channels=channels)
    assert image.shape == (batch, channels, side * p, side * p)
    b, c, row, col, py, px = 1, 2, 1, 0, 1, 1
    assert image[b, c, row * p + py, col * p + px] == tokens[b, row * side + col, (py * p + px) * channels + c]
