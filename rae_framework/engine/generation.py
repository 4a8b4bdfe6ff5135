"""Class-conditional generation shared by the ``sample`` stage and :func:`rae_framework.load_run`'s pipeline:
the (guided) velocity field, one batch from noise to uint8 images, and the autoguidance guide."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rae_framework.conditioning import Conditioning
from rae_framework.engine.images import to_uint8
from rae_framework.engine.run_state import RunState
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Denoiser, Guidance, NoiseSchedule, Sampler, VelocityFn


def velocity_field(denoiser: Denoiser, labels: torch.Tensor | Conditioning, guidance: Guidance | None,
                   guide: Denoiser | None, null: Conditioning | None = None) -> VelocityFn:
    """The field to integrate: guided when a guidance component is configured, else the plain model; ``null``
    (a conditioner's null condition) is passed to the guidance only when there is one."""
    if guidance is not None:
        extra = {} if null is None else {"null": null}
        return guidance.velocity(denoiser, labels, guide=guide, **extra)
    return lambda x, t: denoiser(x, t, labels)


@torch.no_grad()
def generate_batch(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                   labels: torch.Tensor | Conditioning, generator: torch.Generator, *,
                   guidance: Guidance | None = None, guide: Denoiser | None = None,
                   device: torch.device = torch.device("cpu"), null: Conditioning | None = None) -> np.ndarray:
    """One batch of images ``(B, H, W, 3)`` uint8 for ``labels (B,)`` or a Conditioning (with its ``null`` for
    CFG); the noise is drawn on the CPU from
    ``generator``, so the images do not depend on the device."""
    noise = torch.randn((len(labels), *denoiser.latent_shape), generator=generator).to(device)  # (B, C, h, w)
    labels, null = labels.to(device), None if null is None else null.to(device)
    result = sampler.sample(velocity_field(denoiser, labels, guidance, guide, null), noise, schedule,
                            generator=generator)
    return to_uint8(decode(result.samples))


def load_guide(run: RunState) -> Denoiser:
    """The autoguidance guide denoiser, with the trained weights its ``checkpoint`` names."""
    if not run.has("guide"):
        raise ConfigError("components.guide: autoguidance needs a guide denoiser (role 'guide', kind denoiser)")
    if run.assembly.spec("guide").checkpoint is None:
        raise ConfigError("components.guide.checkpoint: autoguidance needs the guide denoiser's trained weights "
                          "(e.g. an earlier or smaller run's checkpoints/denoiser_ema.safetensors)")
    return run.component("guide").to(run.context.device).eval()
