"""Guidance: the combinations, the per-sample inclusive interval, and that only the needed passes run."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from rae_flow.configs import AutoguidanceConfig, CFGConfig, NoGuidanceConfig
from rae_flow.guidance import Autoguidance, ClassifierFreeGuidance, NoGuidance
from rae_framework import Session
from rae_framework.errors import ConfigError


class _Recorder(torch.nn.Module):
    """Velocity ``x * (label + 1) + offset``; records each call's labels. ``num_classes`` = 5 (null = 5)."""

    num_classes = 5

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset, self.calls = offset, []

    def forward(self, x, t, y):
        self.calls.append(y.tolist())
        return x * (y.float() + 1).view(-1, 1, 1, 1) + self.offset


X, T, Y = torch.randn(3, 2, 2, 2), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 2, 4])


def _cond(x=X, y=Y, offset=0.0):
    return x * (y.float() + 1).view(-1, 1, 1, 1) + offset


def test_no_guidance_is_the_conditional_pass():
    model = _Recorder()
    torch.testing.assert_close(NoGuidance(NoGuidanceConfig()).velocity(model, Y)(X, T), _cond())
    assert model.calls == [[0, 2, 4]]


def test_cfg_everywhere_is_one_batched_pass():
    model = _Recorder()
    out = ClassifierFreeGuidance(CFGConfig(scale=3.0)).velocity(model, Y)(X, T)
    uncond = _cond(y=torch.full((3,), 5))
    torch.testing.assert_close(out, uncond + 3.0 * (_cond() - uncond))
    assert model.calls == [[0, 2, 4, 5, 5, 5]]


def test_cfg_interval_is_inclusive_per_sample_and_skips_unneeded_passes():
    model = _Recorder()
    out = ClassifierFreeGuidance(CFGConfig(scale=2.0, t_min=0.5, t_max=0.9)).velocity(model, Y)(X, T)
    assert model.calls == [[0, 2, 4, 5, 5]]  # samples 1 and 2 (t = 0.5 and 0.9, both ends) guided
    torch.testing.assert_close(out[0], _cond()[0])
    uncond = _cond(y=torch.full((3,), 5))
    torch.testing.assert_close(out[1:], (uncond + 2.0 * (_cond() - uncond))[1:])


@pytest.mark.parametrize("config", [CFGConfig(scale=1.0), CFGConfig(scale=4.0, t_min=0.95, t_max=1.0)])
def test_cfg_without_guided_samples_runs_only_the_conditional_pass(config):
    model = _Recorder()
    torch.testing.assert_close(ClassifierFreeGuidance(config).velocity(model, Y)(X, T), _cond())
    assert model.calls == [[0, 2, 4]]


def test_autoguidance_runs_the_guide_only_where_needed_and_conditionally():
    main, guide = _Recorder(), _Recorder(offset=1.0)
    guidance = Autoguidance(AutoguidanceConfig(scale=1.5, t_min=0.0, t_max=0.5))
    assert guidance.needs_guide
    out = guidance.velocity(main, Y, guide=guide)(X, T)
    assert main.calls == [[0, 2, 4]] and guide.calls == [[0, 2]]
    v_guide = _cond(offset=1.0)
    torch.testing.assert_close(out[:2], (v_guide + 1.5 * (_cond() - v_guide))[:2])
    torch.testing.assert_close(out[2], _cond()[2])


def test_autoguidance_needs_a_guide():
    with pytest.raises(ConfigError, match="guide"):
        Autoguidance(AutoguidanceConfig(scale=1.42)).velocity(_Recorder(), Y)


def test_interval_must_be_ordered():
    with pytest.raises(ValidationError, match="t_min"):
        CFGConfig(scale=2.0, t_min=0.8, t_max=0.2)


@pytest.mark.parametrize("preset", ["none-tiny", "cfg-tiny", "autoguidance-tiny"])
def test_tiny_presets_guide(preset):
    session = Session()
    guidance = session.build("guidance", session.presets.get("guidance", preset).component, preset=preset)
    out = guidance.velocity(_Recorder(), Y, guide=_Recorder(offset=1.0))(X, T)
    assert out.shape == X.shape and torch.isfinite(out).all()
