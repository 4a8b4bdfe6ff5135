"""Our autoencoder -> a diffusers AutoencoderRAE folder that diffusers loads and that computes what ours does."""

import pytest
import torch

from rae_framework.interop.diffusers_export import export_diffusers_vae
from rae_framework.interop.official_rae import load_diffusers_rae


def _diffusers_shaped_rae():
    """Our RAE with the architecture diffusers builds (its tiny AutoencoderRAE, 4 x 4 token grid)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    source = diffusers.AutoencoderRAE(
        encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=14, encoder_num_hidden_layers=1,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=64, patch_size=4, encoder_input_size=56)
    return load_diffusers_rae(dict(source.config), source.state_dict()).eval()


def test_export_loads_in_diffusers_and_matches(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    ours = _diffusers_shaped_rae()
    ours.set_statistics(torch.randn(ours.latent_shape) * 0.1, torch.rand(ours.latent_shape) + 0.5)
    export_diffusers_vae(ours, tmp_path / "vae")
    theirs, info = diffusers.AutoencoderRAE.from_pretrained(tmp_path / "vae", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        latent = ours.encode(images)  # (2, 64, 4, 4), normalised
        torch.testing.assert_close(theirs.eval().encode(images).latent, latent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.decode(latent).sample, ours.decode(latent), atol=1e-5, rtol=1e-5)


def test_load_exported_rae_gives_back_our_autoencoder_bit_for_bit(tmp_path):
    from rae_framework.config import AutoencoderConfig
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.interop.diffusers_export import load_exported_rae

    loaded = _diffusers_shaped_rae()
    ours = RepresentationAutoencoder(loaded.encoder, loaded.decoder, AutoencoderConfig(latent_eps=1e-3, noise_tau=0.3))
    ours.set_statistics(torch.randn(ours.latent_shape) * 0.1, torch.rand(ours.latent_shape) + 0.5)
    export_diffusers_vae(ours.eval(), tmp_path / "vae")
    back = load_exported_rae(tmp_path / "vae")
    assert back.config.latent_eps == 1e-3 and back.config.noise_tau == 0.3
    assert torch.equal(back.latent_mean, ours.latent_mean) and torch.equal(back.latent_var, ours.latent_var)
    latent = torch.randn(2, *ours.latent_shape, generator=torch.Generator().manual_seed(1))
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(back.decode(latent), ours.decode(latent))
        assert torch.equal(back.encode(images), ours.encode(images))


def test_a_position_table_diffusers_would_not_regenerate_is_refused(tmp_path):
    from rae_framework.errors import ConfigError
    from rae_framework.nn import sincos_pos_embed

    ours = _diffusers_shaped_rae()
    with torch.no_grad():  # our own table on the 4 x 4 grid: diffusers scales positions to a 16 x 16 grid
        ours.decoder.pos_embed.copy_(sincos_pos_embed(32, 4, cls_token=True)[None])
    with pytest.raises(ConfigError, match=r"regenerates the decoder's position table.*token grid 4 x 4"):
        export_diffusers_vae(ours, tmp_path / "vae")
    assert not (tmp_path / "vae").exists()


def test_an_encoder_config_diffusers_would_build_differently_is_refused(tmp_path):
    from rae_framework.errors import ConfigError

    ours = _diffusers_shaped_rae()
    ours.encoder.model.config.layer_norm_eps = 1e-5
    with pytest.raises(ConfigError, match=r"different encoder \(layer_norm_eps: ours 1e-05"):
        export_diffusers_vae(ours, tmp_path / "vae")


@pytest.mark.parametrize("name,preset", [("timm", "timm-tiny"), ("open_clip", "open-clip-tiny")])
def test_encoders_diffusers_cannot_build_are_refused_by_name(tmp_path, name, preset):
    pytest.importorskip("diffusers")
    from rae_framework import Session
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.errors import ConfigError

    session = Session()
    encoder = session.build("encoder", name, preset=preset)
    channels, grid, _ = encoder.latent_shape
    decoder = session.build("decoder", "vit", {"token_dim": channels, "num_patches": grid * grid}, preset="vit-tiny")
    with pytest.raises(ConfigError, match=rf"encoder '{name}' is not supported \(AutoencoderRAE expresses only"):
        export_diffusers_vae(RepresentationAutoencoder(encoder, decoder), tmp_path / "vae", encoder_name=name)
