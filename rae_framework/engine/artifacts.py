"""What the stages build from a run: the RAE with the trained weights and statistics earlier stages left,
held-out images, reconstructions, and the final weights a training stage saves.

Earlier stages' files are found by output name (``RunState.output``), never by stage-specific paths.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from rae_framework.data.datasets import build_dataset
from rae_framework.engine.checkpoints import save_weights
from rae_framework.engine.run_state import RunState
from rae_framework.engine.statistics import load_statistics
from rae_framework.errors import ConfigError
from rae_framework.stage import StageSpec


def statistics_file(run: RunState, computed: bool) -> Path | None:
    """Latent statistics to normalise with: this run's computed ones (``computed`` and a stage of this
    assembly wrote ``latent_stats``), else ``autoencoder.statistics``, else None (identity)."""
    run_file = run.output("latent_stats") if computed else None
    if run_file is not None:
        return run_file
    configured = run.assembly.autoencoder.statistics
    return Path(configured) if configured else None


def build_rae(run: RunState, *, trained_decoder: bool = True, computed_statistics: bool = True):
    """The assembly's RAE with the run's trained (EMA) decoder and latent statistics (see above), eval mode."""
    from rae_framework.autoencoder import RepresentationAutoencoder

    if not run.has("decoder"):
        raise ConfigError("components.decoder: the run engine builds the RAE (encoder + decoder) for every "
                          "stage that encodes or decodes; add a decoder to the assembly")
    decoder = run.component("decoder")
    weights = run.output("decoder_ema") if trained_decoder else None
    if weights is not None:
        decoder.load_state_dict(load_file(str(weights)))
    rae = RepresentationAutoencoder(run.component("encoder"), decoder, run.assembly.autoencoder)
    path = statistics_file(run, computed_statistics)
    if path is not None:
        rae.set_statistics(*load_statistics(path))
    return rae.to(run.context.device).eval()


def encode_fn(rae, device: torch.device, precision: str = "no"):
    """``images (B, 3, H, W) in [0, 1] -> normalised latents (B, C, h, w)`` float32, eval mode, no grad, on
    ``device`` (under bf16 autocast when ``precision`` is ``bf16``)."""
    def encode(images: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        with torch.no_grad(), autocast:
            return rae.encode(images.to(device)).float()
    return encode


def holdout_images(run: RunState, limit: int | None = None) -> torch.Tensor:
    """``(M, 3, H, W)`` images of the held-out split (the first ``limit``)."""
    dataset = build_dataset(run.assembly.data, "holdout")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        return torch.zeros(0, 3, run.assembly.data.image_size, run.assembly.data.image_size)
    return torch.stack([dataset[index][0] for index in range(count)])


def match_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize targets to the decoder's output size when they differ (bicubic, antialiased)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


@torch.no_grad()
def reconstruct(rae: nn.Module, decoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Eval-mode (noise-free) reconstructions in [0, 1] with ``decoder`` (e.g. the EMA copy)."""
    was_training = rae.training
    rae.eval()
    recon = rae.decode(rae.encode(images), decoder).clamp(0.0, 1.0)
    rae.train(was_training)
    return recon


def save_final_weights(run: RunState, spec: StageSpec, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Rank 0 writes each named output's state dict (``spec.outputs[name]``); every rank waits."""
    if run.context.is_main:
        for name, tensors in weights.items():
            save_weights(run.out_dir / spec.outputs[name], tensors)
    run.context.barrier()
