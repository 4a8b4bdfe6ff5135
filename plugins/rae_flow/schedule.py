"""The shifted linear flow (``shifted-flow``): path, training-time distributions, sampling grid and loss.

Conventions (the reference's): t = 0 is data, t = 1 is noise, ``x_t = (1 - t) x + t eps`` and the denoiser
regresses the velocity ``eps - x = dx_t/dt``. Times are shifted towards noise by
``t' = s t / (1 + (s - 1) t)`` with ``s = sqrt(C h w / shift_base)`` (paper: s = 6.93 for 768x16x16 / 4096).
Float32 operations are ordered as in the reference so that grids and training times match it bit for bit.
"""

from __future__ import annotations

import math

import torch

from rae_flow.configs import ShiftedFlowConfig
from rae_framework.interfaces import NoiseSchedule

__all__ = ["ShiftedFlow", "apply_shift", "inverse_shift", "shift_from_latent_shape",
           "times_from_uniform"]


def shift_from_latent_shape(latent_shape: tuple[int, ...], shift_base: float = 4096.0) -> float:
    """``s = sqrt(prod(latent_shape) / shift_base)``, e.g. 6.928 for (768, 16, 16) over 4096."""
    return math.sqrt(math.prod(latent_shape) / shift_base)


def apply_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """``s t / (1 + (s - 1) t)``: maps [0, 1] onto itself, towards 1 (noise) for s > 1."""
    return shift * t / (1 + (shift - 1) * t)


def inverse_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Closed-form inverse of :func:`apply_shift`: the shift by ``1 / s``."""
    return apply_shift(t, 1.0 / shift)


def _normal_icdf_reference(u: torch.Tensor) -> torch.Tensor:
    """torch's ``Normal(0, 1).icdf`` as the reference evaluates it: ``erfinv(2u - 1) * sqrt(2)`` in float32."""
    return torch.erfinv(2 * u - 1) * math.sqrt(2)


def _normal_icdf_accurate(u: torch.Tensor) -> torch.Tensor:
    """Accurate standard-normal inverse CDF (``ndtri`` in float64), returned in ``u``'s dtype."""
    return torch.special.ndtri(u.double()).to(u.dtype)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """torch's ``Normal(0, 1).cdf``: ``0.5 * (1 + erf(z / sqrt(2)))``."""
    return 0.5 * (1 + torch.erf(z * 1.0 / math.sqrt(2)))


def _truncated_logit_normal(u: torch.Tensor, mean: float, std: float, time_max: float,
                            accurate: bool) -> torch.Tensor:
    """Inverse-CDF logit-normal on [0, time_max] from uniforms ``u (B,)`` (the reference's float32 steps)."""
    mu, sigma, high = (torch.tensor(v, dtype=u.dtype, device=u.device) for v in (mean, std, time_max))
    cdf_high = _normal_cdf((torch.logit(high) - mu) / sigma)  # Phi(b); the lower bound logit(0) gives Phi(a) = 0
    u = cdf_high * u.clamp(0, 1)  # (B,)
    icdf = _normal_icdf_accurate if accurate else _normal_icdf_reference
    return torch.sigmoid(mu + sigma * icdf(u)).clamp(0, high)


def times_from_uniform(u: torch.Tensor, config: ShiftedFlowConfig) -> torch.Tensor:
    """Shifted training times ``(B,)`` from uniform draws ``u (B,)`` in [0, 1], exactly as the reference.

    uniform: ``t = time_max * u``; logit-normal: truncated inverse CDF (see :class:`ShiftedFlowConfig`);
    then the shift.
    """
    if config.time_distribution == "uniform":
        t = u * config.time_max
    else:
        t = _truncated_logit_normal(u, config.logit_mean, config.logit_std, config.time_max, config.accurate_icdf)
    return apply_shift(t, config.resolved_shift)


class ShiftedFlow(NoiseSchedule):
    """Linear flow path with shifted uniform or logit-normal training times and the shifted sampling grid."""

    Config = ShiftedFlowConfig

    def __init__(self, config: ShiftedFlowConfig) -> None:
        super().__init__(config)
        self.shift = config.resolved_shift

    def sample_time(self, batch_size: int, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """Shifted training times ``(B,)``; one ``rand(B)`` draw, on the generator's device (CPU by default)."""
        u = torch.rand(batch_size, generator=generator, device=generator.device if generator is not None else "cpu")
        return times_from_uniform(u, self.config).to(device)

    def interpolate(self, x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = (1 - t) x + t noise`` with ``t (B,)`` broadcast over (C, h, w)."""
        t_ = t.view(-1, *[1] * (x.dim() - 1))  # (B, 1, 1, 1)
        return t_ * noise + (1 - t_) * x

    def velocity_target(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``noise - x``."""
        return noise - x

    def sampling_grid(self, num_steps: int) -> torch.Tensor:
        """``shift(1 - linspace(0, time_max, num_steps))`` in float32, from 1 down to ``shift(1 - time_max)``.

        Bit for bit the reference's grid (src/stage2/transport/integrators.py:100-101), including its float32
        rounding: for some shifts (s = 4.33) the first point is 1.0000001, where the reference evaluates the
        model and, with a guidance interval ending at 1, does not guide. It is kept (not clamped to 1) so that
        samples equal the reference's (tests/parity/test_official_sampling.py); for the released shifts
        (6.93 at 256 px, 13.9 at 512 px) the first point is exactly 1.
        """
        return apply_shift(1 - torch.linspace(0, self.config.time_max, num_steps), self.shift)  # (num_steps,)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """1, or the logit-normal density at the unshifted time for ``loss_weighting='logit-normal'``."""
        if self.config.loss_weighting == "none":
            return torch.ones_like(t)
        u = inverse_shift(t.double(), self.shift).clamp(1e-12, 1 - 1e-12)  # (B,)
        z = (torch.logit(u) - self.config.logit_mean) / self.config.logit_std
        density = torch.exp(-0.5 * z**2) / (self.config.logit_std * math.sqrt(2 * math.pi) * u * (1 - u))
        return density.to(t.dtype)
