"""The DINO discriminator: shapes, frozen backbone, gradients to the input, offline weight errors."""

from __future__ import annotations

import time

import pytest
import torch

from rae_framework import Session
from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_gan.configs import DinoDiscriminatorConfig
from rae_gan.dino_discriminator import DinoDiscriminator

TINY = {"pretrained": False, "input_size": 32, "embed_dim": 32, "depth": 3, "num_heads": 2, "key_depths": (0, 1),
        "kernel_size": 3}


@pytest.fixture(scope="module")
def discriminator() -> DinoDiscriminator:
    torch.manual_seed(0)
    return DinoDiscriminator(DinoDiscriminatorConfig(**TINY))


def test_output_has_one_logit_per_token_and_head(discriminator):
    images = torch.rand(2, 3, 40, 48)  # any input size: resized to input_size like the reference
    logits = discriminator(images)
    tokens = (32 // 8) ** 2
    assert logits.shape == (2, 3 * tokens)  # last block + key depths 0 and 1
    assert torch.isfinite(logits).all()


def test_gradients_reach_the_input_and_heads_but_not_the_backbone(discriminator):
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    discriminator.zero_grad()
    discriminator(images).mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in discriminator.backbone.parameters())
    assert all(parameter.grad is not None for parameter in discriminator.trainable_parameters())
    assert not any(parameter.requires_grad for parameter in discriminator.backbone.parameters())


def test_backbone_stays_in_eval_mode_and_key_bias_is_zero(discriminator):
    discriminator.train()
    assert discriminator.heads.training and not discriminator.backbone.training
    bias = discriminator.backbone.blocks[0].attn.qkv.bias
    width = bias.numel() // 3
    assert torch.count_nonzero(bias[width:2 * width]) == 0


def test_key_depths_beyond_the_backbone_are_a_config_error():
    with pytest.raises(ConfigError, match="key_depths"):
        DinoDiscriminator(DinoDiscriminatorConfig(**{**TINY, "key_depths": (5,)}))


def test_missing_pretrained_weights_fail_fast_and_name_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="vit_small_patch8_224.dino"):
        Session().build("discriminator", "dino", preset="dino")
    assert time.perf_counter() - start < 5.0


def test_local_weights_file_is_loaded(tmp_path):
    from safetensors.torch import save_file

    source = DinoDiscriminator(DinoDiscriminatorConfig(**TINY))
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    loaded = DinoDiscriminator(DinoDiscriminatorConfig(**{**TINY, "pretrained": True, "weights": str(path)}))
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], value), name
    with pytest.raises(ValueError, match="do not fit the hub weights"):
        DinoDiscriminatorConfig(**{**TINY, "pretrained": True})
