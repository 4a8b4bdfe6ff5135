"""Import paths beyond the fixtures: the reference decoder file, strictness, diffusers AutoencoderRAE."""

from __future__ import annotations

import pytest
import torch

from rae_framework.errors import ConfigError
from rae_framework.interop import load_official
from rae_framework.interop.official_rae import load_decoder_checkpoint, load_diffusers_rae

DECODER_CONFIG = {"hidden_size": 16, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
                  "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64, "patch_size": 2,
                  "num_channels": 3, "image_size": 6, "hidden_act": "gelu", "layer_norm_eps": 1e-12}


def reference_layout(decoder) -> dict[str, torch.Tensor]:
    """Our decoder's weights in the reference GeneralDecoder key layout (what model.pt holds)."""
    from rae_framework.interop.official_rae import convert_decoder_state_dict

    ours = decoder.state_dict()
    flat = {"decoder_pos_embed": ours["pos_embed"], "trainable_cls_token": ours["cls_token"]}
    for name in ("embed", "norm", "pred"):
        source = "head" if name == "pred" else name
        flat.update({f"decoder_{name}.{kind}": ours[f"{source}.{kind}"] for kind in ("weight", "bias")})
    for kind in ("weight", "bias"):
        q, k, v = ours[f"blocks.0.attn.qkv.{kind}"].chunk(3)
        for part, value in zip(("query", "key", "value"), (q, k, v)):
            flat[f"decoder_layers.0.attention.attention.{part}.{kind}"] = value
        for ref, mine in (("attention.output.dense", "attn.proj"), ("intermediate.dense", "fc1"),
                          ("output.dense", "fc2"), ("layernorm_before", "norm1"), ("layernorm_after", "norm2")):
            flat[f"decoder_layers.0.{ref}.{kind}"] = ours[f"blocks.0.{mine}.{kind}"]
    assert set(convert_decoder_state_dict(flat)) == set(ours)
    return flat


def test_model_pt_round_trip_and_derived_num_patches(tmp_path):
    decoder = load_official("GeneralDecoder", DECODER_CONFIG)
    assert decoder.num_patches == 9  # (image_size / patch_size)^2 when num_patches is absent
    torch.save(reference_layout(decoder), tmp_path / "model.pt")
    loaded = load_decoder_checkpoint(DECODER_CONFIG, tmp_path / "model.pt")
    tokens = torch.randn(2, 9, 16)
    torch.testing.assert_close(loaded(tokens), decoder(tokens))


def test_decoder_loading_is_strict():
    flat = reference_layout(load_official("GeneralDecoder", DECODER_CONFIG))
    del flat["decoder_norm.bias"]
    with pytest.raises(ConfigError, match="decoder_norm.bias|norm.bias"):
        load_official("GeneralDecoder", DECODER_CONFIG, flat)


def test_rae_rejects_unknown_kwargs():
    with pytest.raises(ConfigError, match="encoder_config_pth"):
        load_official("RAE", {"encoder_config_pth": "x", "encoder_config": {}, "decoder_config": DECODER_CONFIG})


def test_diffusers_autoencoder_rae_import():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderRAE(
        encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=14, encoder_num_hidden_layers=1,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=64, patch_size=4, encoder_input_size=56, latents_mean=[[[0.1]]] * 64,
        latents_std=torch.rand(64, 4, 4).add(0.5).tolist(), scaling_factor=0.5).eval()
    ours = load_diffusers_rae(dict(theirs.config), theirs.state_dict()).eval()
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        latent = theirs.encode(images).latent
        torch.testing.assert_close(ours.encode(images), latent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.decode(latent), theirs.decode(latent).sample, atol=1e-5, rtol=1e-5)
