"""Samplers on analytic velocity fields: update rules, model-call counts, trajectories, the SDE's safety."""

from __future__ import annotations

import pytest
import torch

from rae_flow.configs import Dopri5Config, EulerConfig, HeunConfig, SDEConfig, ShiftedFlowConfig
from rae_flow.samplers import SDE, Dopri5, Euler, Heun
from rae_flow.schedule import ShiftedFlow
from rae_framework import Session

SCHEDULE = ShiftedFlow(ShiftedFlowConfig(shift=2.0))


class _Counting:
    """A velocity field that records the times it is called with."""

    def __init__(self, field):
        self.field, self.times = field, []

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],) and t.dtype == torch.float32
        self.times.append(t[0].item())
        return self.field(x, t)


def _t(t, x):
    return t.to(x.dtype).view(-1, *[1] * (x.dim() - 1))


@pytest.mark.parametrize("sampler, evals", [(Euler(EulerConfig(num_steps=6)), 5), (Heun(HeunConfig(num_steps=6)), 10),
                                            (SDE(SDEConfig(num_steps=6)), 5)])
def test_call_counts_and_trajectory(sampler, evals):
    noise, velocity = torch.randn(2, 3, 2, 2), _Counting(lambda x, t: -x)
    result = sampler.sample(velocity, noise, SCHEDULE, generator=torch.Generator().manual_seed(0),
                            return_trajectory=True)
    assert result.num_function_evals == evals == len(velocity.times)
    assert result.trajectory.shape == (6, 2, 3, 2, 2)
    assert torch.equal(result.trajectory[0], noise) and torch.equal(result.trajectory[-1], result.samples)
    assert sampler.sample(velocity, noise, SCHEDULE).trajectory is None


def test_euler_is_exact_for_a_constant_field():
    noise, grid = torch.randn(2, 3, 2, 2), SCHEDULE.sampling_grid(5)
    result = Euler(EulerConfig(num_steps=5)).sample(lambda x, t: torch.ones_like(x), noise, SCHEDULE)
    torch.testing.assert_close(result.samples, noise + (grid[-1] - grid[0]))


def test_heun_is_exact_for_a_field_linear_in_time():
    """dx/dt = t integrates exactly with the trapezoid rule: x(t_end) = x(1) + (t_end^2 - 1) / 2."""
    noise, grid = torch.randn(4, 1, 1, 1, dtype=torch.float64), SCHEDULE.sampling_grid(4).double()
    field = _Counting(lambda x, t: _t(t, x).expand_as(x))
    result = Heun(HeunConfig(num_steps=4)).sample(field, noise, SCHEDULE)
    torch.testing.assert_close(result.samples, noise + (grid[-1] ** 2 - 1) / 2, atol=1e-6, rtol=0)
    assert field.times[0] == 1.0 and field.times[1] == pytest.approx(grid[1].item())


def test_dopri5_solves_linear_decay_and_counts_calls():
    """dx/dt = x from t = 1 down to t_end: x(t_end) = x(1) exp(t_end - 1)."""
    noise, grid = torch.randn(3, 2, 1, 1, dtype=torch.float64), SCHEDULE.sampling_grid(5)
    field = _Counting(lambda x, t: x)
    result = Dopri5(Dopri5Config(num_steps=5, rtol=1e-7, atol=1e-9)).sample(field, noise, SCHEDULE,
                                                                           return_trajectory=True)
    torch.testing.assert_close(result.samples, noise * torch.exp(grid[-1].double() - 1), atol=1e-6, rtol=1e-6)
    assert result.num_function_evals == len(field.times) > 4
    assert result.trajectory.shape == (5, 3, 2, 1, 1)


def test_sde_without_diffusion_is_euler():
    noise, field = torch.randn(2, 3, 2, 2), lambda x, t: torch.sin(x) * _t(t, x)
    sde = SDE(SDEConfig(num_steps=7, diffusion_norm=0.0)).sample(field, noise, SCHEDULE)
    euler = Euler(EulerConfig(num_steps=7)).sample(field, noise, SCHEDULE)
    assert torch.equal(sde.samples, euler.samples)


def test_sde_is_seeded_finite_and_stochastic():
    noise, field = torch.randn(64, 2, 2, 2), lambda x, t: -x * (1 - _t(t, x))
    sde = SDE(SDEConfig(num_steps=20, diffusion_norm=2.0))
    first = sde.sample(field, noise, SCHEDULE, generator=torch.Generator().manual_seed(1), return_trajectory=True)
    again = sde.sample(field, noise, SCHEDULE, generator=torch.Generator().manual_seed(1))
    other = sde.sample(field, noise, SCHEDULE, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.samples, again.samples) and not torch.equal(first.samples, other.samples)
    assert torch.isfinite(first.trajectory).all()


def test_sde_last_step_adds_no_noise():
    """On a two-point grid the only step is the last one: deterministic whatever the generator."""
    noise, field = torch.randn(8, 2, 1, 1), lambda x, t: x
    sde = SDE(SDEConfig(num_steps=2, diffusion_norm=1.0))
    runs = [sde.sample(field, noise, SCHEDULE, generator=torch.Generator().manual_seed(s)).samples for s in (0, 1)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("preset", ["euler-tiny", "heun-tiny", "dopri5-tiny", "sde-tiny"])
def test_tiny_presets_sample(preset):
    session = Session()
    name = session.presets.get("sampler", preset).component
    sampler = session.build("sampler", name, preset=preset)
    result = sampler.sample(lambda x, t: -x, torch.randn(2, 4, 2, 2), SCHEDULE)
    assert result.samples.shape == (2, 4, 2, 2) and torch.isfinite(result.samples).all()
