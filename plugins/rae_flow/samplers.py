"""Samplers that integrate the velocity from noise (t = 1) down the schedule's grid: euler, heun, dopri5, sde.

All run under ``torch.no_grad``. Times are passed to the velocity as float32 ``(B,)`` tensors taken from
the float32 grid, as the reference does; the state keeps the dtype of the initial noise.

SDE derivation (linear path, t = 0 data, t = 1 noise). With ``x_t = (1 - t) x + t eps`` the velocity is
``v = E[eps - x | x_t]``, so ``x_t = (1 - t) E[x | x_t] + t E[eps | x_t] = E[eps | x_t] - (1 - t) v`` and the
score ``grad log p_t(x_t) = -E[eps | x_t] / t = -(x_t + (1 - t) v) / t``. For any ``g(t) >= 0`` the SDE
``dx = [v - g^2/2 * score] dt + g dW``, run backwards in t, has the flow's marginals. With
``g(t)^2 = 2 w t`` the drift is ``v + w (x + (1 - t) v)``: finite at t = 1 (score = -x) and as t -> 0.
Euler-Maruyama from ``t`` to ``t_next`` (``h = t - t_next > 0``) is
``x <- x - h (v + w (x + (1 - t) v)) + sqrt(2 w t h) z``; the last step adds no noise.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch

from rae_flow.configs import Dopri5Config, EulerConfig, HeunConfig, SDEConfig
from rae_framework.interfaces import NoiseSchedule, Sampler, SampleResult, VelocityFn

__all__ = ["Dopri5", "Euler", "Heun", "SDE"]

# (velocity, x, t_cur, t_next, generator, is_last) -> next state; t_cur/t_next are 0-d float32 tensors
StepFn = Callable[[VelocityFn, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Generator | None", bool],
                  torch.Tensor]


def _times(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a 0-d float32 time to ``(B,)`` on ``x``'s device (the reference's ``ones(B) * t``)."""
    return torch.ones(x.shape[0], device=x.device) * t


def _integrate(step: StepFn, velocity: VelocityFn, noise: torch.Tensor, grid: torch.Tensor,
               generator: torch.Generator | None, keep_all: bool) -> list[torch.Tensor]:
    """Apply ``step`` between consecutive grid points; the states at all points if ``keep_all``, else the last."""
    states = [noise]
    for k in range(len(grid) - 1):
        x = step(velocity, states[-1], grid[k], grid[k + 1], generator, k == len(grid) - 2)
        states = [*states, x] if keep_all else [x]
    return states


class _FixedGridSampler(Sampler):
    """A one-step rule applied on ``schedule.sampling_grid(num_steps)``, counting the model calls."""

    evals_per_step: int = 1

    @abstractmethod
    def _step(self, velocity: VelocityFn, x: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor,
              generator: torch.Generator | None, is_last: bool) -> torch.Tensor:
        """The state at ``t_next`` from the state ``x (B, C, h, w)`` at ``t_cur`` (see :data:`StepFn`)."""

    @torch.no_grad()
    def sample(self, velocity: VelocityFn, noise: torch.Tensor, schedule: NoiseSchedule,
               *, generator: torch.Generator | None = None, return_trajectory: bool = False) -> SampleResult:
        """Integrate from ``noise (B, C, h, w)`` along the grid; ``evals_per_step * (num_steps - 1)`` calls."""
        grid = schedule.sampling_grid(self.config.num_steps).to(noise.device)  # (num_steps,) float32
        states = _integrate(self._step, velocity, noise, grid, generator, return_trajectory)
        trajectory = torch.stack(states) if return_trajectory else None  # (num_steps, B, C, h, w)
        return SampleResult(states[-1], self.evals_per_step * (len(grid) - 1), trajectory)


class Euler(_FixedGridSampler):
    """``x <- x + (t_next - t) v(x, t)``."""

    Config = EulerConfig

    def _step(self, velocity, x, t_cur, t_next, generator, is_last):
        return x + (t_next - t_cur) * velocity(x, _times(t_cur, x))


class Heun(_FixedGridSampler):
    """torchdiffeq's fixed-grid 'heun2': ``k1 = v(x, t)``, ``k2 = v(x + dt k1, t + dt)``, ``x + dt (k1 + k2) / 2``.

    The second evaluation time is computed as torchdiffeq does on a decreasing grid (in negated time),
    ``-((-t) + (t - t_next))``, which can differ from ``t_next`` by one float32 ulp.
    """

    Config = HeunConfig
    evals_per_step = 2

    def _step(self, velocity, x, t_cur, t_next, generator, is_last):
        dt = t_next - t_cur
        k1 = velocity(x, _times(t_cur, x))
        k2 = velocity(x + dt * k1, _times(-((-t_cur) + (t_cur - t_next)), x))
        return x + dt * (k1 * 0.5 + k2 * 0.5)


class SDE(_FixedGridSampler):
    """Euler-Maruyama on the reverse SDE with ``g(t)^2 = 2 w t`` (module docstring); deterministic last step."""

    Config = SDEConfig

    def _step(self, velocity, x, t_cur, t_next, generator, is_last):
        h = t_cur - t_next  # > 0
        w = self.config.diffusion_norm
        v = velocity(x, _times(t_cur, x))
        mean = x - h * (v + w * (x + (1 - t_cur) * v))
        if is_last or w == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return mean + torch.sqrt(2 * w * t_cur * h) * z


class Dopri5(Sampler):
    """Adaptive Dormand-Prince through ``torchdiffeq.odeint`` on the decreasing grid (the reference's default)."""

    Config = Dopri5Config

    @torch.no_grad()
    def sample(self, velocity: VelocityFn, noise: torch.Tensor, schedule: NoiseSchedule,
               *, generator: torch.Generator | None = None, return_trajectory: bool = False) -> SampleResult:
        """Solve to rtol/atol; ``num_function_evals`` counts the velocity calls actually made."""
        from torchdiffeq import odeint

        grid = schedule.sampling_grid(self.config.num_steps).to(noise.device)  # (num_steps,) float32
        calls = [0]

        def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            return velocity(x, _times(t.float(), x))

        states = odeint(field, noise, grid, method="dopri5", rtol=self.config.rtol, atol=self.config.atol)
        return SampleResult(states[-1], calls[0], states if return_trajectory else None)
