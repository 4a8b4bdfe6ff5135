"""Our autoencoder -> a diffusers AutoencoderRAE folder that diffusers loads and that computes what ours does."""

import pytest
import torch

from rae_framework.interop.diffusers_export import export_diffusers_vae
from rae_framework.interop.official_rae import load_diffusers_rae


def test_export_loads_in_diffusers_and_matches(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    source = diffusers.AutoencoderRAE(
        encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=14, encoder_num_hidden_layers=1,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=64, patch_size=4, encoder_input_size=56)
    ours = load_diffusers_rae(dict(source.config), source.state_dict()).eval()
    ours.set_statistics(torch.randn(ours.latent_shape) * 0.1, torch.rand(ours.latent_shape) + 0.5)
    export_diffusers_vae(ours, tmp_path / "vae")
    theirs, info = diffusers.AutoencoderRAE.from_pretrained(tmp_path / "vae", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        latent = ours.encode(images)  # (2, 64, 4, 4), normalised
        torch.testing.assert_close(theirs.eval().encode(images).latent, latent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.decode(latent).sample, ours.decode(latent), atol=1e-5, rtol=1e-5)
