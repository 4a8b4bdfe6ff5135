"""The ViT decoder: shapes for any token grid, the position table as a parameter, presets."""

from __future__ import annotations

import pytest
import torch

from rae_framework import Session
from rae_framework.errors import ConfigError


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


def test_missing_encoder_fields_are_an_error(session):
    with pytest.raises(ConfigError, match="token_dim"):
        session.build("decoder", "vit", {"num_layers": 1, "hidden_size": 8, "num_heads": 2})


@pytest.mark.parametrize("preset,dims", [("vit-b", (768, 12, 12, 3072)), ("vit-l", (1024, 24, 16, 4096)),
                                         ("vit-xl", (1152, 28, 16, 4096))])
def test_paper_presets(session, preset, dims):
    config = session.make_config("decoder", "vit", preset=preset)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size) == dims
    assert config.patch_size == 16
