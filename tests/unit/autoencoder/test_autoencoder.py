"""The RAE composition: encode/decode contract, statistics, noise augmentation, decoder param filling."""

from __future__ import annotations

import pytest
import torch

from rae_framework import Session
from rae_framework.autoencoder import RepresentationAutoencoder, latent_to_tokens, tokens_to_latent
from rae_framework.config import AutoencoderConfig, latent_shape_of
from rae_framework.engine.statistics import load_statistics, save_statistics
from rae_framework.errors import ConfigError


@pytest.fixture(scope="module")
def session():
    return Session()


def make_rae(session, **config):
    encoder_config = session.make_config("encoder", "dinov2", preset="dinov2-tiny")
    channels, grid, _ = latent_shape_of(encoder_config)
    decoder_params = {"token_dim": channels, "num_patches": grid * grid}
    encoder = session.build("encoder", "dinov2", preset="dinov2-tiny")
    decoder = session.build("decoder", "vit", decoder_params, preset="vit-tiny")
    return RepresentationAutoencoder(encoder, decoder, AutoencoderConfig(**config)).eval()


def test_shapes_and_latent_shape(session):
    rae = make_rae(session)
    images = torch.rand(2, 3, 20, 20)
    latent = rae.encode(images)
    assert latent.shape == (2, *rae.latent_shape) == (2, 32, 2, 2)
    assert rae.decode(latent).shape == (2, 3, 16, 16)
    assert latent_shape_of(session.make_config("encoder", "dinov2", preset="dinov2-tiny")) == rae.latent_shape


def test_row_major_reshape_round_trip():
    tokens = torch.randn(2, 9, 5)
    latent = tokens_to_latent(tokens)
    assert torch.equal(latent[:, :, 1, 2], tokens[:, 1 * 3 + 2])
    assert torch.equal(latent_to_tokens(latent), tokens)


def test_statistics_normalise_and_invert(session, tmp_path):
    rae = make_rae(session)
    images = torch.rand(2, 3, 28, 28)
    raw = tokens_to_latent(rae.encode_tokens(images))
    torch.testing.assert_close(rae.encode(images), raw / (1 + 1e-5) ** 0.5)  # identity statistics
    mean, var = torch.randn(rae.latent_shape), torch.rand(rae.latent_shape) + 0.5
    rae.set_statistics(mean, var)
    normalised = rae.encode(images)
    torch.testing.assert_close(normalised, (raw - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(rae.denormalize(normalised), raw)
    save_statistics(tmp_path / "stats.safetensors", None, var)
    config = AutoencoderConfig(statistics=str(tmp_path / "stats.safetensors"))
    from_file = RepresentationAutoencoder(rae.encoder, rae.decoder, config)
    torch.testing.assert_close(from_file.encode(images), raw / torch.sqrt(var + 1e-5))


def test_statistics_shape_is_checked(session):
    with pytest.raises(ConfigError, match="latent var"):
        make_rae(session).set_statistics(None, torch.ones(7, 2, 2))


def test_reference_stat_file_with_var_only(tmp_path):
    torch.save({"var": torch.ones(4, 2, 2)}, tmp_path / "stat.pt")
    mean, var = load_statistics(tmp_path / "stat.pt")
    assert mean is None and var.shape == (4, 2, 2)


def test_noise_only_in_train_mode_and_per_sample(session):
    rae = make_rae(session, noise_tau=0.8)
    images = torch.rand(3, 3, 28, 28)
    clean = rae.encode(images)
    assert torch.equal(rae.encode(images), clean)
    rae.train()
    assert not rae.encoder.training
    generator = torch.Generator().manual_seed(0)
    noisy = rae.encode(images, generator=generator)
    deviation = (noisy - clean).flatten(1).std(dim=1)
    assert (deviation > 0).all() and (deviation < 0.8 * 1.5).all()
    assert not torch.allclose(deviation[0], deviation[1])  # one sigma per sample
    torch.testing.assert_close(rae.encode(images, generator=torch.Generator().manual_seed(0)), noisy)


def test_width_mismatch_is_an_error(session):
    encoder = session.build("encoder", "dinov2", preset="dinov2-tiny")
    decoder = session.build("decoder", "vit", {"token_dim": 16}, preset="vit-tiny")
    with pytest.raises(ConfigError, match="token_dim"):
        RepresentationAutoencoder(encoder, decoder, AutoencoderConfig())


def test_resize_skipped_at_input_size(session):
    rae = make_rae(session)
    images = torch.rand(1, 3, 28, 28)
    torch.testing.assert_close(rae.preprocess(images), (images - rae.image_mean) / rae.image_std)


@pytest.mark.parametrize("name,preset", [("dinov2", "dinov2-tiny"), ("siglip2", "siglip2-tiny"), ("mae", "mae-tiny"),
                                         ("timm", "timm-tiny"), ("open_clip", "open-clip-tiny")])
def test_every_tiny_encoder_composes_with_vit_tiny(session, name, preset):
    """The tiny presets share the 32 x 2 x 2 latent of vit-tiny, so any of them assembles into an RAE."""
    encoder = session.build("encoder", name, preset=preset)
    rae = RepresentationAutoencoder(encoder, session.build("decoder", "vit", preset="vit-tiny"), AutoencoderConfig())
    latent = rae.encode(torch.rand(2, 3, 24, 24))
    assert latent.shape == (2, 32, 2, 2) and rae.decode(latent).shape == (2, 3, 16, 16)
