"""Contract tests of every encoder's tiny preset: shapes, token contract, frozen, affine-free final norm."""

from __future__ import annotations

import pytest
import torch
from quick import quickly

from rae_framework import Session
from rae_framework.errors import ConfigError, WeightsNotFoundError

TINY = {"dinov2": "dinov2-tiny", "siglip2": "siglip2-tiny", "mae": "mae-tiny", "timm": "timm-tiny",
        "open_clip": "open-clip-tiny"}
PREFIX = {"dinov2": 5, "siglip2": 0, "mae": 1, "timm": 3, "open_clip": 1}


@pytest.fixture(scope="module")
def session():
    return Session()


@pytest.fixture(scope="module", params=sorted(TINY))
def built(request, session):
    name = request.param
    config = session.make_config("encoder", name, preset=TINY[name])
    return name, config, session.build("encoder", name, preset=TINY[name])


def test_tokens_follow_the_config(built):
    name, config, encoder = built
    pixels = torch.randn(2, 3, config.input_size, config.input_size)
    tokens = encoder(pixels)
    assert encoder.num_prefix_tokens == PREFIX[name]
    assert tokens.shape == (2, encoder.num_prefix_tokens + config.grid_size ** 2, config.token_dim)
    assert (encoder.token_dim, encoder.input_size, encoder.num_tokens) == \
           (config.token_dim, config.input_size, config.grid_size ** 2)


def test_final_norm_is_affine_free(built):
    _, config, encoder = built
    tokens = encoder(torch.randn(2, 3, config.input_size, config.input_size))
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(tokens.shape[:2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(-1, unbiased=False), torch.ones(tokens.shape[:2]), atol=0.05, rtol=0)  # eps


def test_frozen_and_always_eval(built):
    _, _, encoder = built
    parent = torch.nn.Sequential(encoder)
    parent.train()
    assert not encoder.training and not any(module.training for module in encoder.modules())
    assert not any(parameter.requires_grad for parameter in encoder.parameters())


def test_build_is_fast(session):
    session.build("encoder", "dinov2", preset="dinov2-tiny")  # imports done
    with quickly():
        session.build("encoder", "dinov2", preset="dinov2-tiny")


def test_missing_weights_offline_fail_fast(session, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    session.build("encoder", "dinov2", preset="dinov2-tiny")  # library imports done
    with quickly(), pytest.raises(WeightsNotFoundError, match="no-such-org/dinov2-missing"):
        session.build("encoder", "dinov2", {"size": "s", "weights": "no-such-org/dinov2-missing"})


@pytest.mark.parametrize("name,preset,repo", [("timm", "timm-dinov2-b-reg", "timm/vit_base_patch14_reg4_dinov2"),
                                              ("open_clip", "open-clip-siglip2-b-16", "ViT-B-16-SigLIP2-256"),
                                              ("siglip2", "siglip2-b-16-256", "google/siglip2-base-patch16-256")])
def test_real_presets_without_download_fail_fast(session, monkeypatch, name, preset, repo):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    params = {**session.resolve_params("encoder", name, preset=preset), "allow_download": False}
    session.build("encoder", name, preset=TINY[name])  # library imports done
    with quickly(), pytest.raises(WeightsNotFoundError, match=repo):
        session.build("encoder", name, params)


def test_missing_local_file_names_it(session, tmp_path):
    missing = tmp_path / "encoder.safetensors"
    with pytest.raises(WeightsNotFoundError, match="encoder.safetensors"):
        session.build("encoder", "mae", {"weights": str(missing)})


def test_safetensors_file_round_trip(session, tmp_path):
    """An encoder saved as a safetensors file (HF key names) loads back to the same outputs."""
    from safetensors.torch import save_file

    encoder = session.build("encoder", "dinov2", preset="dinov2-tiny")
    file = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, str(file))
    params = {**session.resolve_params("encoder", "dinov2", preset="dinov2-tiny"), "pretrained": True,
              "weights": str(file)}
    loaded = session.build("encoder", "dinov2", params)
    pixels = torch.randn(1, 3, 28, 28)
    torch.testing.assert_close(loaded(pixels), encoder(pixels))


def test_unknown_override_is_an_error(session):
    with pytest.raises(ConfigError, match="hiden_size"):
        session.build("encoder", "mae", {"pretrained": False, "overrides": {"hiden_size": 8}})


def test_latent_shape_is_torch_free(session):
    config = session.make_config("encoder", "dinov2", preset="dinov2-b-reg")
    assert (config.token_dim, config.grid_size) == (768, 16)
    assert session.make_config("encoder", "dinov2", preset="dinov2-b-reg-512").grid_size == 32
    assert session.make_config("encoder", "siglip2", preset="siglip2-b-16-256").grid_size == 16


@pytest.mark.parametrize("name", ["mae", "siglip2", "dinov2"])
def test_position_embeddings_resize_to_another_input_size(session, name):
    """A larger input than the pretraining grid (e.g. MAE-B at 256 px, DINOv2 at 448 px) keeps token order."""
    params = {**session.resolve_params("encoder", name, preset=TINY[name])}
    patch = session.make_config("encoder", name, params).patch_size
    params["input_size"] = patch * 5
    encoder = session.build("encoder", name, params)
    tokens = encoder(torch.randn(1, 3, patch * 5, patch * 5))
    assert tokens.shape[1] == encoder.num_prefix_tokens + 25


def test_full_siglip_checkpoint_folder_loads_the_vision_tower(session, tmp_path):
    """A save_pretrained folder of a whole SiglipModel (text tower, logit scale, head) gives its vision tower."""
    import torch.nn.functional as F
    from transformers import SiglipConfig, SiglipModel

    vision = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
              "image_size": 32, "patch_size": 16}
    text = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 32,
            "vocab_size": 50, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    full = SiglipModel(SiglipConfig(vision_config=vision, text_config=text)).eval()
    full.save_pretrained(tmp_path)
    encoder = session.build("encoder", "siglip2", {"input_size": 32, "weights": str(tmp_path),
                                                   "overrides": {"hidden_size": 32}})
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        tower = full.vision_model
        hidden = tower.encoder(tower.embeddings(pixels)).last_hidden_state  # before post_layernorm
        expected = F.layer_norm(hidden, (32,), eps=full.config.vision_config.layer_norm_eps)
        torch.testing.assert_close(encoder(pixels), expected)


def test_weights_that_do_not_fit_are_an_error(session, tmp_path):
    from transformers import ViTMAEConfig, ViTMAEModel

    ViTMAEModel(ViTMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             image_size=32)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="token dim 32"):
        session.build("encoder", "mae", {"input_size": 32, "weights": str(tmp_path)})
