"""The timm adapter's advice names the settings that exist ('dim', 'patch', model_kwargs), never a property."""

from __future__ import annotations

import pytest

from rae_encoders.configs import TimmEncoderConfig
from rae_framework import Session
from rae_framework.errors import ConfigError


def test_an_underivable_width_names_the_dim_field():
    with pytest.raises(ValueError, match=r"cannot derive 'dim' from model name 'vit_custom_patch8'; set 'dim' "
                                         r"\(or model_kwargs.embed_dim\)"):
        TimmEncoderConfig(model_name="vit_custom_patch8")
    with pytest.raises(ValueError, match=r"set 'patch' \(or model_kwargs.patch_size\)"):
        TimmEncoderConfig(model_name="vit_small_custom")
    config = TimmEncoderConfig(model_name="vit_custom_patch8", dim=96)  # following the advice works
    assert (config.token_dim, config.patch_size) == (96, 8)


def test_a_built_model_that_contradicts_the_params_says_which_to_set():
    pytest.importorskip("timm")
    from rae_framework import compat

    compat.ensure_torchvision_importable()
    params = {"model_name": "vit_tiny_patch16_224", "pretrained": False, "dim": 100, "input_size": 32,
              "model_kwargs": {"img_size": 32, "depth": 1}}
    with pytest.raises(ConfigError, match=r"has embed_dim 192 and patch 16, but the encoder's params give 100 and "
                                          r"16 .*; set dim: 192 in its params"):
        Session().build("encoder", "timm", params)
