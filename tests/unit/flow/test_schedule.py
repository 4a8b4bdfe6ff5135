"""The shifted-flow schedule: config rules, path, training times, grid, loss weighting and loss."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from rae_flow.configs import ShiftedFlowConfig
from rae_flow.schedule import ShiftedFlow, apply_shift, times_from_uniform
from rae_framework import Session
from rae_framework.errors import ConfigError


def _schedule(**params) -> ShiftedFlow:
    return ShiftedFlow(ShiftedFlowConfig(**params))


def test_shift_is_derived_from_the_latent_shape():
    assert _schedule(latent_shape=(768, 16, 16)).shift == pytest.approx(6.928203, abs=1e-6)
    assert _schedule(latent_shape=(768, 32, 32)).shift == pytest.approx(13.856406, abs=1e-6)
    assert _schedule(latent_shape=(32, 4, 4), shift_base=64).shift == pytest.approx(math.sqrt(8))
    assert _schedule(shift=3.0).shift == 3.0 and _schedule().shift == 1.0


def test_shift_and_latent_shape_together_are_rejected():
    with pytest.raises(ValidationError, match="not both"):
        ShiftedFlowConfig(latent_shape=(4, 2, 2), shift=2.0)
    with pytest.raises(ConfigError, match="params.logit_std"):
        Session().build("schedule", "shifted-flow", {"logit_std": 0.0})


def test_path_and_velocity_target():
    schedule, x, noise = _schedule(), torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    x_t = schedule.interpolate(x, noise, t)
    torch.testing.assert_close(x_t[0], x[0])
    torch.testing.assert_close(x_t[2], noise[2])
    torch.testing.assert_close(x_t[1], 0.5 * (x[1] + noise[1]))
    torch.testing.assert_close(schedule.velocity_target(x, noise), noise - x)


def test_sampling_grid_runs_from_one_to_the_shifted_end():
    schedule = _schedule(latent_shape=(768, 16, 16))
    grid = schedule.sampling_grid(50)
    assert grid.dtype == torch.float32 and grid.shape == (50,)
    assert grid[0].item() == 1.0 and torch.all(grid[1:] < grid[:-1])
    expected_end = apply_shift(torch.tensor(1 - 0.999), schedule.shift)
    assert grid[-1].item() == pytest.approx(expected_end.item(), rel=1e-4)  # float32 1 - 0.999


@pytest.mark.parametrize("distribution", ["uniform", "logit-normal"])
def test_sample_time_range_and_reproducibility(distribution):
    schedule = _schedule(time_distribution=distribution, latent_shape=(32, 4, 4), shift_base=64)
    first = schedule.sample_time(4096, generator=torch.Generator().manual_seed(0))
    again = schedule.sample_time(4096, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    upper = apply_shift(torch.tensor(0.999), schedule.shift).item()
    assert first.min().item() >= 0.0 and first.max().item() <= upper + 1e-7


def test_times_from_uniform_endpoints():
    u = torch.tensor([0.0, 0.5, 1.0])
    uniform = times_from_uniform(u, ShiftedFlowConfig())
    torch.testing.assert_close(uniform, torch.tensor([0.0, 0.4995, 0.999]))
    logit = times_from_uniform(u, ShiftedFlowConfig(time_distribution="logit-normal", logit_mean=1.0))
    assert logit[0].item() == 0.0 and logit[2].item() == pytest.approx(0.999)
    assert logit[1].item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-3)  # median = sigmoid(mean)


def test_logit_normal_loss_weight_is_the_density_at_the_unshifted_time():
    schedule = _schedule(loss_weighting="logit-normal", shift=2.0)
    t = apply_shift(torch.tensor([0.5]), 2.0)  # unshifted 0.5: density phi(0) / (0.5 * 0.5)
    assert schedule.loss_weight(t).item() == pytest.approx(4 / math.sqrt(2 * math.pi), rel=1e-5)
    torch.testing.assert_close(_schedule().loss_weight(t), torch.ones(1))


class _Oracle(torch.nn.Module):
    """Predicts ``noise - x`` exactly for known ``x`` and ``noise`` (shape ``(B, C, h, w)``)."""

    def __init__(self, x, noise):
        super().__init__()
        self.x, self.noise = x, noise

    def forward(self, x_t, t, y):
        return self.noise - self.x + 0.1 * (y.view(-1, 1, 1, 1) == 1)


def test_loss_at_is_the_per_sample_mean_squared_error_times_the_weight():
    x, noise, t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2), torch.tensor([0.3, 0.7])
    loss = _schedule().loss_at(_Oracle(x, noise), x, torch.tensor([0, 1]), noise, t)
    torch.testing.assert_close(loss, torch.tensor([0.0, 0.01]))
    weighted_schedule = _schedule(loss_weighting="logit-normal")
    weighted = weighted_schedule.loss_at(_Oracle(x, noise), x, torch.tensor([1, 1]), noise, t)
    torch.testing.assert_close(weighted, 0.01 * weighted_schedule.loss_weight(t))


def test_training_loss_draws_noise_then_times():
    schedule, x = _schedule(time_distribution="logit-normal", shift=2.0), torch.randn(3, 2, 2, 2)
    seen = {}

    def denoiser(x_t, t, y):
        seen["x_t"], seen["t"] = x_t, t
        return torch.zeros_like(x_t)

    loss = schedule.training_loss(denoiser, x, torch.zeros(3, dtype=torch.long), torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(x.shape, generator=generator)
    t = schedule.sample_time(3, generator=generator)
    torch.testing.assert_close(seen["t"], t)
    torch.testing.assert_close(seen["x_t"], schedule.interpolate(x, noise, t))
    torch.testing.assert_close(loss, ((noise - x) ** 2).mean(dim=(1, 2, 3)))
