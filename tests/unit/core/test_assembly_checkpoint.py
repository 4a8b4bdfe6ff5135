"""``components.<role>.checkpoint``: trained weights loaded strictly when the assembly builds the role."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import rae_framework

ASSEMBLY = """\
name: checkpoint-test
components:
  denoiser: {{name: dit-dh, preset: dit-dh-tiny, params: {{in_channels: 8, input_size: 2}}, checkpoint: '{path}'}}
"""


def _assembly(tmp_path, checkpoint):
    (tmp_path / "a.yaml").write_text(ASSEMBLY.format(path=checkpoint))
    return rae_framework.load_assembly(str(tmp_path / "a.yaml"))


def test_the_checkpoint_is_loaded_into_the_built_component(tmp_path):
    torch.manual_seed(1)
    trained = rae_framework.build("denoiser", "dit-dh", {"in_channels": 8, "input_size": 2}, preset="dit-dh-tiny")
    state = {key: value + 0.5 for key, value in trained.state_dict().items()}
    save_file(state, str(tmp_path / "trained.safetensors"))
    built = _assembly(tmp_path, tmp_path / "trained.safetensors").build("denoiser")
    for key, value in built.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert _assembly(tmp_path, tmp_path / "trained.safetensors").to_yaml().count("trained.safetensors") == 1


def test_a_missing_mismatched_or_cut_checkpoint_is_a_config_error_naming_the_path(tmp_path):
    with pytest.raises(rae_framework.ConfigError, match="components.denoiser.checkpoint: .*does not exist"):
        _assembly(tmp_path, tmp_path / "none.safetensors").build("denoiser")
    save_file({"unrelated": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(rae_framework.ConfigError, match="components.denoiser.checkpoint: .*does not fit"):
        _assembly(tmp_path, tmp_path / "other.safetensors").build("denoiser")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes()[:20])
    with pytest.raises(rae_framework.ConfigError,
                       match=r"components.denoiser.checkpoint: .*cut.safetensors is not a readable safetensors file"):
        _assembly(tmp_path, tmp_path / "cut.safetensors").build("denoiser")
