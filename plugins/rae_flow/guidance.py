"""Guidance: turn a denoiser (and optionally a guide denoiser) into the velocity field a sampler integrates.

``none``: the conditional velocity. ``cfg``: classifier-free guidance ``v_u + s (v_c - v_u)`` with the null
label ``denoiser.num_classes``. ``autoguidance`` (Karras et al. 2024): ``v_g + s (v_m - v_g)`` where the guide
``g`` is a weaker denoiser and both passes are conditional. Both apply per sample where
``t_min <= t <= t_max`` (inclusive) and ``s != 1``; elsewhere the output is the main conditional velocity and
the extra pass is not computed for those samples. CFG batches the conditional and unconditional passes
into one forward of ``B + k`` samples (``k`` = samples being guided).

Not replicated on purpose: the reference LightningDiT's ``forward_with_cfg`` decides guidance by ``t[0]`` for
the whole batch and guides *outside* the listed intervals; the reference's autoguidance also runs both
models on a discarded null-label half.
"""

from __future__ import annotations

import torch

from rae_flow.configs import AutoguidanceConfig, CFGConfig, NoGuidanceConfig
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Denoiser, Guidance, VelocityFn

__all__ = ["Autoguidance", "ClassifierFreeGuidance", "NoGuidance"]


def _guided_mask(t: torch.Tensor, config: CFGConfig | AutoguidanceConfig) -> torch.Tensor:
    """Per-sample ``(B,)`` bool: inside the inclusive interval and with a scale that changes anything."""
    inside = (t >= config.t_min) & (t <= config.t_max)  # (B,)
    return inside & (config.scale != 1.0)


def _extrapolate(main: torch.Tensor, mask: torch.Tensor, other: torch.Tensor, scale: float) -> torch.Tensor:
    """``main`` with rows ``mask`` replaced by ``other + scale (main - other)``; ``other`` holds those rows only."""
    out = main.clone()  # (B, C, h, w)
    out[mask] = other + scale * (main[mask] - other)
    return out


class NoGuidance(Guidance):
    """One conditional pass per evaluation."""

    Config = NoGuidanceConfig

    def velocity(self, denoiser: Denoiser, labels: torch.Tensor, *, guide: Denoiser | None = None) -> VelocityFn:
        """``v(x, t) = denoiser(x, t, labels)``."""
        return lambda x, t: denoiser(x, t, labels)


class ClassifierFreeGuidance(Guidance):
    """Per-sample interval CFG with only the needed unconditional passes, batched with the conditional one."""

    Config = CFGConfig

    def velocity(self, denoiser: Denoiser, labels: torch.Tensor, *, guide: Denoiser | None = None) -> VelocityFn:
        """Guided velocity for ``labels (B,)``; the unconditional label is ``denoiser.num_classes``."""
        null = torch.full_like(labels, denoiser.num_classes)  # (B,)

        def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            mask = _guided_mask(t, self.config)  # (B,)
            if not bool(mask.any()):
                return denoiser(x, t, labels)
            out = denoiser(torch.cat([x, x[mask]]), torch.cat([t, t[mask]]), torch.cat([labels, null[mask]]))
            return _extrapolate(out[: len(x)], mask, out[len(x):], self.config.scale)  # (B, C, h, w)

        return field


class Autoguidance(Guidance):
    """Guidance of the main denoiser by a weaker, conditional guide denoiser (supplied by the engine)."""

    Config = AutoguidanceConfig
    needs_guide = True

    def velocity(self, denoiser: Denoiser, labels: torch.Tensor, *, guide: Denoiser | None = None) -> VelocityFn:
        """``v_g + s (v_m - v_g)`` inside the interval; the guide runs only on the guided samples."""
        if guide is None:
            raise ConfigError("autoguidance needs a guide denoiser (a smaller or less-trained model of the same "
                              "latent shape); none was supplied")

        def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            main = denoiser(x, t, labels)  # (B, C, h, w)
            mask = _guided_mask(t, self.config)  # (B,)
            if not bool(mask.any()):
                return main
            return _extrapolate(main, mask, guide(x[mask], t[mask], labels[mask]), self.config.scale)

        return field
