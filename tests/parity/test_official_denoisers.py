"""Parity of lightning-dit / dit-dh with the reference LightningDiT / DiTwDDTHead (fixture files).

Sizes come from the fixtures; tolerances from the fixture README (single forward: atol = rtol = 1e-5).
"""

from __future__ import annotations

import pytest
import torch

from rae_framework.errors import ConfigError
from rae_framework.interop import load_official
from rae_framework.interop.official_dit import load_official_checkpoint

CASES = [("ddt_head.pt", "DiTwDDTHead"), ("lightning_dit.pt", "LightningDiT")]
TABLE_KEYS = ("pos_embed", "freqs_cos", "freqs_sin")


def loaded(official, file_name: str, target: str) -> tuple[dict, torch.nn.Module]:
    fixture = official(file_name)
    model = load_official(target, fixture["config"], fixture["state_dict"]).eval()
    return fixture, model


@pytest.mark.parametrize(("file_name", "target"), CASES)
def test_forward_matches_reference(official, file_name, target):
    fixture, model = loaded(official, file_name, target)
    inputs = fixture["inputs"]
    with torch.no_grad():
        out = model(inputs["x"], inputs["t"], inputs["y"])
    torch.testing.assert_close(out, fixture["output"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("file_name", "target"), CASES)
def test_plain_forward_on_cfg_inputs_matches_reference(official, file_name, target):
    fixture, model = loaded(official, file_name, target)
    inputs = fixture["cfg"]["inputs"]
    with torch.no_grad():
        out = model(inputs["x"], inputs["t"], inputs["y"])
    torch.testing.assert_close(out, fixture["cfg"]["plain_forward_on_cfg_inputs"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("file_name", "target"), CASES)
def test_fixed_tables_are_computed_like_the_reference(official, file_name, target):
    """Fresh sin-cos and RoPE tables equal the reference's (the loader would hide a difference)."""
    fixture = official(file_name)
    fresh = load_official(target, fixture["config"]).state_dict()
    for key, value in fixture["state_dict"].items():
        if key.endswith(TABLE_KEYS):
            torch.testing.assert_close(fresh[key], value, atol=1e-6, rtol=1e-6, msg=key)


@pytest.mark.parametrize(("file_name", "target"), CASES)
def test_mismatched_state_dict_lists_the_keys(official, file_name, target):
    fixture = official(file_name)
    broken = dict(fixture["state_dict"])
    broken.pop("t_embedder.W")
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"(?s)missing: \['t_embedder.W'\].*unexpected: \['extra.weight'\]"):
        load_official(target, fixture["config"], broken)


def test_unknown_reference_kwarg_is_rejected(official):
    fixture = official("ddt_head.pt")
    with pytest.raises(ConfigError, match="hidden_sise"):
        load_official("DiTwDDTHead", {**fixture["config"], "hidden_sise": 3})


def test_training_checkpoint_layout_loads_ema_or_model(official, tmp_path):
    """A checkpoint in the reference stage-2 layout ({step, epoch, model, ema, optimizer, scheduler})."""
    fixture, reference = loaded(official, "ddt_head.pt", "DiTwDDTHead")
    ema = {f"module.{key}": value for key, value in fixture["state_dict"].items()}  # DDP-wrapped keys
    model = {key: value + 1.0 for key, value in fixture["state_dict"].items()}
    path = tmp_path / "ep-0000001.pt"
    torch.save({"step": 1, "epoch": 0, "model": model, "ema": ema, "optimizer": {"state": {}, "param_groups": []},
                "scheduler": {"last_epoch": 1}}, path)
    inputs = fixture["inputs"]
    with torch.no_grad():
        from_ema = load_official_checkpoint("DiTwDDTHead", fixture["config"], path).eval()
        torch.testing.assert_close(from_ema(**inputs), fixture["output"], atol=1e-5, rtol=1e-5)
        from_model = load_official_checkpoint("DiTwDDTHead", fixture["config"], path, use_ema=False)
        assert torch.equal(from_model.state_dict()["t_embedder.W"], model["t_embedder.W"])
        assert not torch.allclose(from_model.eval()(**inputs), reference(**inputs))


def test_missing_checkpoint_file_is_a_clear_error(official, tmp_path):
    fixture = official("ddt_head.pt")
    with pytest.raises(ConfigError, match="not found"):
        load_official_checkpoint("DiTwDDTHead", fixture["config"], tmp_path / "absent.pt")
