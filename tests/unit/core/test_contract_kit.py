"""The contract kit catches broken components (its checks can fail), and selects cases as documented."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field

from core_fakes import FakePlugin
from rae_framework import ComponentConfig, Session
from rae_framework.interfaces import Guidance, Sampler, SampleResult
from rae_framework.registry import Entry, Provenance
from rae_framework.testing import (
    ComponentContract,
    DenoiserContract,
    GuidanceContract,
    SamplerContract,
    contract_cases,
    contract_tests_for,
)
from rae_framework.testing.contracts import assert_gradients_flow, undescribed_fields
from rae_framework.testing.doubles import TinyDenoiser, TinyDenoiserConfig

PRESETS = """\
kind: sampler
presets:
  a-tiny: {component: fake-sampler, params: {num_steps: 2}}
  b-tiny: {component: fake-sampler}
  full: {component: fake-sampler}
"""


def test_cases_are_the_tiny_presets_filtered_by_component_preset_and_plugin(tmp_path):
    (tmp_path / "p.yaml").write_text(PRESETS)
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin([str(tmp_path / "p.yaml")]))])
    assert [case.id for case in contract_cases(session, "sampler")] == ["fake-sampler[a-tiny]", "fake-sampler[b-tiny]"]
    assert [case.preset for case in contract_cases(session, "sampler", preset="full")] == ["full"]
    assert contract_cases(session, "sampler", component="other") == []
    assert contract_cases(session, "sampler", plugins=["someone-else"]) == []
    assert len(contract_cases(session, "sampler", plugins=["fakes"])) == 2
    assert contract_cases(session, "no-such-kind") == []


def test_contract_tests_for_builds_a_collectable_class():
    cls = contract_tests_for("denoiser", "dit-dh", "dit-dh-tiny")
    assert cls.__name__ == "TestDenoiserDitDhContract" and issubclass(cls, DenoiserContract)
    assert (cls.kind, cls.component_name, cls.preset_name) == ("denoiser", "dit-dh", "dit-dh-tiny")


class LaxConfig(ComponentConfig):
    """Forgets a description."""

    size: int = Field(1, description="Described.")
    other: int = 2


def test_config_rules_catch_missing_descriptions():
    assert undescribed_fields(LaxConfig) == ["other"]
    entry = Entry("sampler", "lax", "x:Y", "test_contract_kit:LaxConfig", Provenance("test"))
    with pytest.raises(AssertionError, match="description"):
        ComponentContract().test_config_is_frozen_strict_and_described(entry)


def test_gradient_check_catches_unused_parameters():
    module = TinyDenoiser(TinyDenoiserConfig())
    module.unused = torch.nn.Linear(2, 2)
    x, t, y = torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 1])
    with pytest.raises(AssertionError, match="unused"):
        assert_gradients_flow(module, module(x, t, y))


def test_denoiser_contract_passes_on_the_double_and_fails_on_a_wrong_shape():
    denoiser = TinyDenoiser(TinyDenoiserConfig()).eval()
    DenoiserContract().test_forward_shape_and_determinism(denoiser)
    DenoiserContract().test_gradients_flow(denoiser)
    denoiser.forward = lambda x, t, y: x[:, :1]
    with pytest.raises(AssertionError):
        DenoiserContract().test_forward_shape_and_determinism(denoiser)


class StuckSampler(Sampler):
    """Returns the noise: never moves towards the data."""

    Config = TinyDenoiserConfig

    def sample(self, velocity, noise, schedule, *, generator=None, return_trajectory=False):
        return SampleResult(noise, 1, noise[None] if return_trajectory else None)


def test_sampler_contract_catches_a_sampler_that_does_not_integrate():
    with pytest.raises(AssertionError):
        SamplerContract().test_converges_towards_the_data(StuckSampler(TinyDenoiserConfig()))


class DoublingGuidance(Guidance):
    """Scales the conditional velocity: changes a label-blind denoiser's field."""

    Config = TinyDenoiserConfig

    def velocity(self, denoiser, labels, *, guide=None):
        return lambda x, t: 2 * denoiser(x, t, labels)


def test_guidance_contract_catches_a_field_that_changes_label_blind_denoisers():
    guidance = DoublingGuidance(TinyDenoiserConfig())
    GuidanceContract().test_velocity_field(guidance)
    with pytest.raises(AssertionError):
        GuidanceContract().test_label_blind_denoiser_is_unchanged(guidance)
