"""The ViT decoder: shapes for any token grid, sin-cos table layout, unpatchify order, presets."""

from __future__ import annotations

import pytest
import torch

from rae_framework import Session
from rae_framework.errors import ConfigError
from rae_decoders.vit import sincos_2d_with_cls, unpatchify


@pytest.fixture(scope="module")
def session():
    return Session()


def test_tiny_preset_shapes_and_grid_resize(session):
    decoder = session.build("decoder", "vit", preset="vit-tiny").eval()
    assert decoder(torch.randn(2, 4, 32)).shape == (2, 3, 16, 16)
    assert decoder(torch.randn(2, 9, 32)).shape == (2, 3, 16, 16)  # 3x3 tokens resized to the 2x2 grid
    assert decoder.last_layer_weight.shape == (8 * 8 * 3, 32)


def test_pos_embed_is_a_loaded_parameter(session):
    decoder = session.build("decoder", "vit", preset="vit-tiny")
    assert "pos_embed" in dict(decoder.named_parameters())


def test_sincos_layout_columns_first_and_zero_cls():
    table = sincos_2d_with_cls(8, 3)[0]  # (1 + 9, 8)
    assert torch.equal(table[0], torch.zeros(8))
    # token (row 0, col 1) vs (row 1, col 0): the first half encodes the column, the second the row
    assert torch.allclose(table[1 + 1, :4], table[1 + 3, 4:])
    assert torch.allclose(table[1 + 0, :2], torch.zeros(2))  # sin(0) of column 0


def test_unpatchify_is_channel_fastest():
    p, channels, side = 2, 3, 2
    logits = torch.arange(1 * side * side * p * p * channels, dtype=torch.float32).reshape(1, side * side, -1)
    image = unpatchify(logits, p, channels)
    row, col, py, px, c = 1, 0, 1, 1, 2
    assert image[0, c, row * p + py, col * p + px] == logits[0, row * side + col, (py * p + px) * channels + c]


def test_missing_encoder_fields_are_an_error(session):
    with pytest.raises(ConfigError, match="token_dim"):
        session.build("decoder", "vit", {"num_layers": 1, "hidden_size": 8, "num_heads": 2})


@pytest.mark.parametrize("preset,dims", [("vit-b", (768, 12, 12, 3072)), ("vit-l", (1024, 24, 16, 4096)),
                                         ("vit-xl", (1152, 28, 16, 4096))])
def test_paper_presets(session, preset, dims):
    config = session.make_config("decoder", "vit", preset=preset)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size) == dims
    assert config.patch_size == 16
