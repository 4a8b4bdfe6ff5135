"""Guidance: turn a denoiser (and optionally a guide denoiser) into the velocity field a sampler integrates.

``none``: the conditional velocity. ``cfg``: classifier-free guidance ``v_u + s (v_c - v_u)`` with the null
label ``denoiser.num_classes``. ``autoguidance`` (Karras et al. 2024): ``v_g + s (v_m - v_g)`` where the guide
``g`` is a weaker denoiser and both passes are conditional. Both apply per sample where
``t_min <= t <= t_max`` (inclusive) and ``s != 1``; elsewhere the output is the main conditional velocity and
the extra pass is not computed for those samples. CFG batches the conditional and unconditional passes
into one forward of ``B + k`` samples (``k`` = samples being guided).

The condition is a label tensor ``(B,)`` (the class path, passed to the denoiser as a tensor, as always) or a
:class:`~rae_framework.conditioning.Conditioning` (prompts: its rows are selected and concatenated on every
field; CFG's unconditional rows come from the ``null`` condition the caller gives, the conditioner's).

Not replicated on purpose: the reference LightningDiT's ``forward_with_cfg`` decides guidance by ``t[0]`` for
the whole batch and guides *outside* the listed intervals; the reference's autoguidance also runs both
models on a discarded null-label half.
"""

from __future__ import annotations

import torch

from rae_flow.configs import AutoguidanceConfig, CFGConfig, NoGuidanceConfig
from rae_framework.conditioning import Conditioning
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Denoiser, Guidance, VelocityFn

Condition = torch.Tensor | Conditioning  # labels (B,) or a Conditioning of B rows

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


def _rows(condition: Condition, mask: torch.Tensor) -> Condition:
    return condition[mask] if isinstance(condition, torch.Tensor) else condition.rows(mask)


def _cat(first: Condition, second: Condition) -> Condition:
    return torch.cat([first, second]) if isinstance(first, torch.Tensor) else first.cat(second)


def null_condition(condition: Condition, denoiser: Denoiser, null: Conditioning | None) -> Condition:
    """CFG's unconditional input: ``null`` when given, else the null label ``denoiser.num_classes`` (labels
    only; a prompt's null condition comes from its conditioner)."""
    if null is not None:
        if len(null) != len(condition):
            raise ConfigError(f"the null condition has {len(null)} rows, the condition {len(condition)}")
        return null
    if isinstance(condition, torch.Tensor):
        return torch.full_like(condition, denoiser.num_classes)  # (B,)
    if condition.labels is not None and condition.tokens is None and condition.pooled is None:
        labels = torch.full_like(condition.labels, denoiser.num_classes)
        return Conditioning(labels=labels, null=torch.ones_like(labels, dtype=torch.bool))
    raise ConfigError("classifier-free guidance of a text condition needs its null condition (the conditioner's "
                      "null(batch_size)); none was given")


class NoGuidance(Guidance):
    """One conditional pass per evaluation."""

    Config = NoGuidanceConfig

    def velocity(self, denoiser: Denoiser, labels: Condition, *, guide: Denoiser | None = None,
                 null: Conditioning | None = None) -> VelocityFn:
        """``v(x, t) = denoiser(x, t, labels)``."""
        return lambda x, t: denoiser(x, t, labels)


class ClassifierFreeGuidance(Guidance):
    """Per-sample interval CFG with only the needed unconditional passes, batched with the conditional one."""

    Config = CFGConfig

    def velocity(self, denoiser: Denoiser, labels: Condition, *, guide: Denoiser | None = None,
                 null: Conditioning | None = None) -> VelocityFn:
        """Guided velocity for ``labels (B,)`` (unconditional: the label ``denoiser.num_classes``) or a
        Conditioning (unconditional: ``null``)."""
        null = null_condition(labels, denoiser, null)  # B rows

        def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            mask = _guided_mask(t, self.config)  # (B,)
            if not bool(mask.any()):
                return denoiser(x, t, labels)
            out = denoiser(torch.cat([x, x[mask]]), torch.cat([t, t[mask]]), _cat(labels, _rows(null, mask)))
            return _extrapolate(out[: len(x)], mask, out[len(x):], self.config.scale)  # (B, C, h, w)

        return field


class Autoguidance(Guidance):
    """Guidance of the main denoiser by a weaker, conditional guide denoiser (supplied by the engine)."""

    Config = AutoguidanceConfig
    needs_guide = True

    def velocity(self, denoiser: Denoiser, labels: Condition, *, guide: Denoiser | None = None,
                 null: Conditioning | None = None) -> VelocityFn:
        """``v_g + s (v_m - v_g)`` inside the interval; the guide runs only on the guided samples (both passes
        conditional, so ``null`` is not used)."""
        if guide is None:
            raise ConfigError("autoguidance needs a guide denoiser (a smaller or less-trained model of the same "
                              "latent shape); none was supplied")

        def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            main = denoiser(x, t, labels)  # (B, C, h, w)
            mask = _guided_mask(t, self.config)  # (B,)
            if not bool(mask.any()):
                return main
            return _extrapolate(main, mask, guide(x[mask], t[mask], _rows(labels, mask)), self.config.scale)

        return field
