"""Reference kwargs -> our configs, and state-dict loading details (no fixture files needed)."""

from __future__ import annotations

import pytest
import torch

from rae_framework.errors import ConfigError
from rae_framework.interop import load_official
from rae_framework.interop.official_dit import dit_dh_params, lightning_dit_params, strip_wrapper_prefixes

DDT_TINY = {"input_size": 4, "in_channels": 8, "hidden_size": [32, 48], "depth": [1, 1], "num_heads": 2,
            "num_classes": 10}


def test_dit_dh_kwargs_take_reference_defaults_and_pairs():
    params = dit_dh_params({**DDT_TINY, "patch_size": [2, 2]})
    assert params["num_heads"] == [2, 2] and params["patch_size"] == 2
    assert params["use_pos_embed"] is True and params["class_dropout_prob"] == 0.1


def test_dit_dh_different_body_and_head_patches_are_rejected():
    with pytest.raises(ConfigError, match="different body/head patch sizes"):
        dit_dh_params({**DDT_TINY, "patch_size": [1, 2]})


def test_lightning_dit_defaults_include_learn_sigma_and_ignore_use_gembed():
    params = lightning_dit_params({"hidden_size": 32, "use_gembed": False})
    assert params["learn_sigma"] is True and "use_gembed" not in params


def test_wrapper_prefixes_are_stripped():
    cleaned = strip_wrapper_prefixes({"module._orig_mod.blocks.0.x": 1, "pos_embed": 2})
    assert cleaned == {"blocks.0.x": 1, "pos_embed": 2}


def test_round_trip_through_compiled_and_ddp_key_names():
    torch.manual_seed(0)
    source = load_official("DiTwDDTHead", DDT_TINY)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.1)
    wrapped = {f"module._orig_mod.{key}": value for key, value in source.state_dict().items()}
    copy = load_official("DiTwDDTHead", DDT_TINY, wrapped)
    for (key, a), b in zip(source.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(a, b), key


def test_shape_mismatch_is_reported_by_key():
    state = load_official("DiTwDDTHead", DDT_TINY).state_dict()
    with pytest.raises(ConfigError, match=r"(?s)shape mismatch: .*'pos_embed: \(1, 16, 32\) vs ours \(1, 4, 32\)'"):
        load_official("DiTwDDTHead", {**DDT_TINY, "patch_size": 2}, state)
