"""The DINO discriminator: shapes, frozen backbone, gradients to the input, offline weight errors."""

from __future__ import annotations

import pytest
import torch
from quick import quickly

from rae_framework import Session
from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_gan.configs import DinoDiscriminatorConfig
from rae_gan.dino_discriminator import DinoDiscriminator

TINY = {"pretrained": False, "input_size": 32, "embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 8,
        "key_depths": (0, 1), "kernel_size": 3}


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
    session = Session()
    download = "huggingface-cli download timm/vit_small_patch8_224.dino"
    with quickly(), pytest.raises(WeightsNotFoundError, match=download):
        session.build("discriminator", "dino", preset="dino")


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


def _reference_vit_taps(state: dict, images: torch.Tensor, config: DinoDiscriminatorConfig) -> list[torch.Tensor]:
    """The reference's FrozenDINONoDrop, written out: [-1, 1] input, x_scale/x_shift, tanh-GELU blocks,
    taps without the final norm, the last block first."""
    F = torch.nn.functional
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    x = F.interpolate(images * 2 - 1, size=(config.input_size,) * 2, mode="bilinear", align_corners=False)
    x = x * (0.5 / std) + (0.5 - mean) / std
    tokens = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=config.patch_size)
    tokens = torch.cat([state["cls_token"].expand(len(x), -1, -1), tokens.flatten(2).transpose(1, 2)], 1)
    tokens = tokens + state["pos_embed"]
    width, heads, taps = config.embed_dim, config.num_heads, []
    for index in range(config.depth):
        p = lambda name: state[f"blocks.{index}.{name}"]  # noqa: E731
        h = F.layer_norm(tokens, (width,), p("norm1.weight"), p("norm1.bias"), 1e-6)
        q, k, v = F.linear(h, p("attn.qkv.weight"), p("attn.qkv.bias")).view(len(x), -1, 3, heads, width // heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        attended = ((q @ k.transpose(-2, -1)) / (width // heads) ** 0.5).softmax(-1) @ v  # (B, heads, L, d)
        tokens = tokens + F.linear(attended.transpose(1, 2).flatten(2), p("attn.proj.weight"), p("attn.proj.bias"))
        h = F.layer_norm(tokens, (width,), p("norm2.weight"), p("norm2.bias"), 1e-6)
        h = F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias")), approximate="tanh")
        tokens = tokens + F.linear(h, p("mlp.fc2.weight"), p("mlp.fc2.bias"))
        if index in config.key_depths:
            taps.append(tokens[:, 1:].transpose(1, 2))
    return [tokens[:, 1:].transpose(1, 2), *taps]


def test_backbone_taps_match_the_reference_vit(discriminator):
    images = torch.rand(2, 3, 20, 28)
    expected = _reference_vit_taps(discriminator.backbone.state_dict(), images, discriminator.config)
    with torch.no_grad():
        for ours, theirs in zip(discriminator.features(images), expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_state_dict_holds_the_heads_only_with_the_reference_key_names(discriminator):
    state = discriminator.state_dict()
    assert state and all(key.startswith("heads.") for key in state)
    assert {"heads.0.0.0.weight_orig", "heads.0.1.fn.0.weight_orig", "heads.0.1.fn.1.weight", "heads.0.2.weight_u"} \
        <= set(state)
    other = DinoDiscriminator(DinoDiscriminatorConfig(**TINY))
    backbone_before = {k: v.clone() for k, v in other.backbone.state_dict().items()}
    other.load_state_dict(state, strict=True)
    tokens = torch.randn(2, 32, 16)
    with torch.no_grad():  # eval: spectral norm uses the loaded power-iteration vectors as they are
        torch.testing.assert_close(other.eval().heads[0](tokens), discriminator.eval().heads[0](tokens))
    assert all(torch.equal(other.backbone.state_dict()[k], v) for k, v in backbone_before.items())
