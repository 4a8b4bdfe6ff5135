"""Torch-free configurations of the flow components: schedule, samplers and guidance.

Imported by ``rae list`` / ``describe`` / ``validate`` without torch; the classes that use them live in
``schedule.py``, ``samplers.py`` and ``guidance.py``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig


class ShiftedFlowConfig(ComponentConfig):
    """The linear path ``x_t = (1 - t) x + t eps`` with the resolution-dependent time shift.

    The shift ``s = sqrt(prod(latent_shape) / shift_base)`` is derived from the latent shape (filled in by the
    assembly from the autoencoder); ``shift`` is an explicit override for use without a latent shape. The
    reference asserts s >= 1; here any s > 0 is accepted (s < 1 moves the times towards data).
    """

    time_distribution: Literal["uniform", "logit-normal"] = Field(
        "uniform", description="Training-time distribution before the shift: 'uniform' on [0, time_max] or a "
                               "truncated 'logit-normal' (logit_mean, logit_std) on [0, time_max].")
    logit_mean: float = Field(0.0, description="Mean of logit(t) for the logit-normal distribution.")
    logit_std: float = Field(1.0, gt=0.0, description="Standard deviation of logit(t) for the logit-normal "
                                                      "distribution.")
    time_max: float = Field(0.999, gt=0.0, le=1.0, description="Upper end of the (unshifted) training times and "
                                                               "1 - the last unshifted sampling grid point "
                                                               "(reference: 1 - 1/1000).")
    latent_shape: tuple[int, int, int] | None = Field(
        None, description="Latent (C, h, w) the shift is derived from; filled in from the autoencoder.")
    shift_base: float = Field(4096.0, gt=0.0, description="Base dimension of the shift: s = sqrt(C*h*w / "
                                                          "shift_base) (paper: 4096 = 64x64x1).")
    shift: float | None = Field(None, gt=0.0, description="Explicit shift s, only when latent_shape is not "
                                                          "given; None with no latent_shape means s = 1.")
    accurate_icdf: bool = Field(False, description="Use an accurate normal inverse CDF (ndtri, float64) for the "
                                                   "logit-normal; False reproduces the reference's float32 "
                                                   "sqrt(2) * erfinv(2u - 1), imprecise in the lower tail.")
    loss_weighting: Literal["none", "logit-normal"] = Field(
        "none", description="Per-sample loss weight: 'none' (the reference), or 'logit-normal' = the "
                            "logit-normal density at the unshifted t (SD3's weighting, equivalent in "
                            "expectation to sampling t from it; use with time_distribution 'uniform').")

    @model_validator(mode="after")
    def _one_source_of_shift(self) -> ShiftedFlowConfig:
        if self.latent_shape is not None and self.shift is not None:
            raise ValueError("give either latent_shape (the shift is derived from it; an assembly fills it in from "
                             "the autoencoder) or shift, not both; to change a derived shift, set shift_base")
        if self.latent_shape is not None and min(self.latent_shape) <= 0:
            raise ValueError(f"latent_shape must be positive, got {self.latent_shape}")
        return self

    @property
    def resolved_shift(self) -> float:
        """The time shift s (python float): derived from the latent shape, else ``shift``, else 1."""
        if self.latent_shape is not None:
            return math.sqrt(math.prod(self.latent_shape) / self.shift_base)
        return 1.0 if self.shift is None else float(self.shift)


class EulerConfig(ComponentConfig):
    """Explicit Euler on the schedule's grid (the reference's default ODE sampler)."""

    num_steps: int = Field(50, ge=2, description="Grid points including t = 1; num_steps - 1 model calls.")


class HeunConfig(ComponentConfig):
    """Heun's second-order method (torchdiffeq's fixed-grid 'heun2'), also on the last step."""

    num_steps: int = Field(50, ge=2, description="Grid points including t = 1; 2 * (num_steps - 1) model calls.")


class Dopri5Config(ComponentConfig):
    """Adaptive Dormand-Prince 5(4) (torchdiffeq), reporting the states at the schedule's grid points."""

    num_steps: int = Field(50, ge=2, description="Grid points at which the state is reported (not the step "
                                                 "count: the steps adapt to rtol/atol).")
    rtol: float = Field(1e-3, gt=0.0, description="Relative error tolerance (reference default 1e-3).")
    atol: float = Field(1e-6, gt=0.0, description="Absolute error tolerance (reference default 1e-6).")


class SDEConfig(ComponentConfig):
    """Euler-Maruyama on the reverse-time SDE with the same marginals as the flow (diffusion g(t)^2 = 2 w t)."""

    num_steps: int = Field(250, ge=2, description="Grid points including t = 1; num_steps - 1 model calls, the "
                                                  "last step without noise.")
    diffusion_norm: float = Field(1.0, ge=0.0, description="w in g(t)^2 = 2 w t; 0 turns the sampler into Euler.")


class NoGuidanceConfig(ComponentConfig):
    """The conditional velocity as is (one model pass per step)."""


class _IntervalConfig(ComponentConfig):
    """Guidance scale and the inclusive time interval in which guidance applies (per sample)."""

    scale: float = Field(1.0, ge=0.0, description="Guidance scale s; 1 means no guidance (and no extra pass).")
    t_min: float = Field(0.0, description="Guide samples with t_min <= t (inclusive).")
    t_max: float = Field(1.0, description="Guide samples with t <= t_max (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> _IntervalConfig:
        if self.t_min > self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must not exceed t_max ({self.t_max})")
        return self


class CFGConfig(_IntervalConfig):
    """Classifier-free guidance ``v_uncond + s (v_cond - v_uncond)`` inside [t_min, t_max]."""

    needs_null_label: ClassVar[bool] = True  # validation: the denoiser needs its null-class row


class AutoguidanceConfig(_IntervalConfig):
    """Autoguidance ``v_guide + s (v_main - v_guide)`` (both conditional) inside [t_min, t_max]."""

    needs_guide: ClassVar[bool] = True  # validation: the assembly needs a 'guide' denoiser role
