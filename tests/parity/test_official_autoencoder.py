"""Parity of the stage-1 autoencoder with the reference implementation (``vit_decoder.pt``, ``rae_tiny.pt``).

Models are built through ``load_official`` from the fixture's own configs and weights; sizes come from the
files. Tolerance: 1e-5 max abs in float32 (single forward passes, see the fixture README).
"""

from __future__ import annotations

import pytest
import torch

from rae_framework.interop import load_official

ATOL = 1e-5


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=ATOL)


def rae_params(fixture: dict) -> dict:
    """The reference RAE kwargs, with the files it reads from paths given as data."""
    kwargs = fixture["rae_constructor_kwargs"]
    return {"encoder_cls": kwargs["encoder_cls"], "encoder_config": fixture["encoder_config"],
            "image_mean": fixture["image_mean"], "image_std": fixture["image_std"],
            "encoder_input_size": fixture["encoder_input_size"], "decoder_config": fixture["decoder_config"],
            "decoder_patch_size": kwargs["decoder_patch_size"], "noise_tau": kwargs["noise_tau"],
            "reshape_to_2d": kwargs["reshape_to_2d"], "stats": fixture["stats"], "eps": kwargs["eps"],
            "encoder_params": kwargs.get("encoder_params", {})}


@pytest.fixture(scope="module")
def decoder_fixture(official):
    return official("vit_decoder.pt")


@pytest.fixture(scope="module")
def rae_fixture(official):
    return official("rae_tiny.pt")


@pytest.fixture(scope="module")
def rae(rae_fixture):
    return load_official("RAE", rae_params(rae_fixture), rae_fixture["rae_state_dict"]).eval()


def test_general_decoder_logits_and_pixels(decoder_fixture):
    decoder = load_official("GeneralDecoder", decoder_fixture["config"], decoder_fixture["state_dict"]).eval()
    with torch.no_grad():
        assert_close(decoder.forward_logits(decoder_fixture["input"]), decoder_fixture["output_logits"])
        assert_close(decoder(decoder_fixture["input"]), decoder_fixture["output"])


def test_general_decoder_token_grid_resize(decoder_fixture):
    decoder = load_official("GeneralDecoder", decoder_fixture["config"], decoder_fixture["state_dict"]).eval()
    case = decoder_fixture["interp_case"]
    with torch.no_grad():
        assert_close(decoder.forward_logits(case["input"]), case["output_logits"])
        assert_close(decoder(case["input"]), case["output"])


def test_rae_encode_intermediates(rae, rae_fixture):
    steps = rae_fixture["intermediates"]
    with torch.no_grad():
        pixels = rae.preprocess(rae_fixture["input"])
        assert_close(pixels, steps["encoder_input"])
        all_tokens = rae.encoder(pixels)
        assert_close(all_tokens, steps["encoder_all_tokens"])
        assert_close(rae.encode_tokens(rae_fixture["input"]), steps["encoder_tokens"])
    assert rae.encoder.num_prefix_tokens == all_tokens.shape[1] - steps["encoder_tokens"].shape[1]


def test_rae_encode_decode(rae, rae_fixture):
    with torch.no_grad():
        latent = rae.encode(rae_fixture["input"])
        assert_close(latent, rae_fixture["encode_output"])
        assert_close(rae.decode(rae_fixture["encode_output"]), rae_fixture["decode_output"])
        assert_close(rae(rae_fixture["input"]), rae_fixture["decode_output"])


def test_rae_decoder_intermediates(rae, rae_fixture):
    steps = rae_fixture["intermediates"]
    with torch.no_grad():
        assert_close(rae.denormalize(rae_fixture["encode_output"]), steps["latent_unnormalized"])
        assert_close(rae.decoder.forward_logits(steps["decoder_input"]), steps["decoder_logits"])


def test_rae_decoder_weights_equal_the_flat_decoder_file(rae_fixture):
    """The flat ``model.pt`` layout (decoder_state_dict) loads strictly into the same decoder."""
    params = {**rae_fixture["decoder_config"]}
    decoder = load_official("GeneralDecoder", params, rae_fixture["decoder_state_dict"]).eval()
    with torch.no_grad():
        assert_close(decoder.forward_logits(rae_fixture["intermediates"]["decoder_input"]),
                     rae_fixture["intermediates"]["decoder_logits"])
