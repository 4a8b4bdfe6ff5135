"""Torch-free settings of the run engine: the ``data`` and ``stages`` sections of an assembly.

Owned by the engine; the assembly schema (``rae_framework.assembly``) embeds these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rae_framework.config import ComponentConfig
from rae_framework.data.cache_plan import LatentCacheConfig


DIFFAUG_POLICY_PATTERN = r"^(|(color|translation|cutout)(,(color|translation|cutout))*)$"
"""A DiffAugment policy: comma-separated operations ('' = none); shared with the augmentation's own Config."""


class DataConfig(ComponentConfig):
    """Which images to train on."""

    source: Literal["digits", "folder"] = Field("digits", description="'digits' = scikit-learn's bundled 8x8 "
                                                "digits (offline); 'folder' = class subfolders (ImageNet layout).")
    root: str | None = Field(None, description="Folder of class subfolders, for source 'folder'.")
    image_size: int = Field(32, gt=0, description="Side of the square images fed to the autoencoder.")
    horizontal_flip: bool = Field(False, description="Random horizontal flip (never for digits).")
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share held out for evaluation.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")


class OptimizerConfig(ComponentConfig):
    """AdamW with warm-up and decay."""

    lr: float = Field(2e-4, gt=0.0, description="Peak learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    hold_steps: int = Field(0, ge=0, description="Steps at the peak learning rate after warm-up, before the "
                                                 "decay starts (the reference holds 2e-4 for 40 epochs).")
    decay: Literal["constant", "cosine", "linear"] = Field("constant", description="Decay after warm-up "
                                                                                  "and hold.")
    min_lr: float = Field(0.0, ge=0.0, description="Final learning rate of the decay.")
    grad_clip: float | None = Field(1.0, description="Max global gradient norm; None = no clipping.")


class TrainDecoderStage(ComponentConfig):
    """Stage 1: train the decoder (encoder frozen) with L1 + LPIPS + GAN."""

    enabled: bool = Field(True, description="Run this stage.")
    steps: int = Field(1000, gt=0, description="Optimiser steps.")
    batch_size: int = Field(32, gt=0, description="Global batch size.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Decoder optimiser.")
    ema_decay: float = Field(0.999, ge=0.0, le=1.0, description="EMA decay of the decoder weights.")
    l1_weight: float = Field(1.0, ge=0.0, description="Weight of the L1 reconstruction loss.")
    perceptual_weight: float = Field(1.0, ge=0.0, description="Weight of the perceptual (LPIPS) loss.")
    gan_weight: float = Field(0.75, ge=0.0, description="Weight of the adaptive GAN generator loss.")
    discriminator_start_step: int = Field(0, ge=0, description="Step from which the discriminator trains.")
    gan_start_step: int = Field(0, ge=0, description="Step from which the GAN term enters the decoder loss.")
    checkpoint_every: int = Field(500, gt=0, description="Steps between checkpoints.")
    sample_every: int = Field(500, gt=0, description="Steps between saved reconstructions (and held-out "
                                                     "PSNR/SSIM when those metrics are registered).")
    keep_last: int = Field(2, gt=0, description="Checkpoints kept.")
    log_every: int = Field(10, gt=0, description="Steps between rows in metrics.csv / TensorBoard.")
    eval_images: int = Field(256, gt=0, description="Held-out images used for PSNR/SSIM during training.")
    gan_loss: Literal["hinge", "vanilla"] = Field("hinge", description="Discriminator loss.")
    max_adaptive_weight: float = Field(1e4, gt=0.0, description="Upper clamp of the adaptive GAN weight.")
    diffaug: str = Field("color,translation,cutout", pattern=DIFFAUG_POLICY_PATTERN,
                         description="DiffAugment policy on discriminator inputs: comma-separated operations "
                                     "applied in order ('' = off). The reference uses 'color,translation'.")


class LatentStatsStage(ComponentConfig):
    """Exact per-position latent mean/variance over the training set."""

    enabled: bool = Field(True, description="Run this stage.")
    batch_size: int = Field(64, gt=0, description="Encoding batch size.")


class TrainDenoiserStage(ComponentConfig):
    """Stage 2: flow matching on cached latents."""

    enabled: bool = Field(True, description="Run this stage.")
    steps: int = Field(1000, gt=0, description="Optimiser steps.")
    batch_size: int = Field(256, gt=0, description="Global batch size (micro-batches x accumulation x ranks).")
    grad_accumulation: int = Field(1, gt=0, description="Micro-batches per optimiser step.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Denoiser optimiser.")
    ema_decay: float = Field(0.9995, ge=0.0, le=1.0, description="EMA decay; EMA weights are used for sampling.")
    class_dropout: float = Field(0.1, ge=0.0, le=1.0, description="Label dropout to the null class.")
    mixed_precision: Literal["no", "bf16"] = Field("no", description="bf16 autocast.")
    compile: bool = Field(False, description="torch.compile the denoiser.")
    label_dropout: Literal["engine", "model"] = Field(
        "engine", description="'engine': labels are dropped by the engine with probability class_dropout from "
                              "the step's seeded generator (identical under resume, accumulation and DDP) and the "
                              "denoiser runs with its own random drop off; 'model': the denoiser's train mode "
                              "drops labels itself (class_dropout unused).")
    latent_cache: LatentCacheConfig = Field(default_factory=LatentCacheConfig,
                                            description="Encode the dataset once and train from disk: enabled, "
                                                        "dtype, flips, folder (true/false = enabled).")
    checkpoint_every: int = Field(500, gt=0, description="Steps between checkpoints.")
    keep_last: int = Field(2, gt=0, description="Checkpoints kept.")
    log_every: int = Field(10, gt=0, description="Steps between rows in metrics.csv / TensorBoard.")


class SampleStage(ComponentConfig):
    """Generate class-conditional samples into samples/samples.npz and samples/grid.png."""

    enabled: bool = Field(True, description="Run this stage.")
    per_class: int = Field(100, gt=0, description="Samples per class (labels 'equal').")
    labels: Literal["equal", "random"] = Field("equal", description="How class labels are chosen.")
    batch_size: int = Field(100, gt=0, description="Samples per batch.")
    use_ema: bool = Field(True, description="Sample with the EMA weights.")
    grid_columns: int = Field(8, gt=0, description="Samples per class row in grid.png.")
    grid_max_classes: int = Field(16, gt=0, description="At most this many class rows in grid.png.")


class EvaluateStage(ComponentConfig):
    """Metrics into metrics.json."""

    enabled: bool = Field(True, description="Run this stage.")
    metrics: list[str] = Field(default_factory=list, description="Registered metric names to compute.")
    reference: str | None = Field(None, description="Reference batch (ADM .npz or image folder) for gFID etc.; "
                                                    "None = the held-out split of the training data.")
    batch_size: int = Field(64, gt=0, description="Images per metric update.")


class StagesConfig(ComponentConfig):
    """The stages of a run, executed in this order; each can be disabled or run alone."""

    train_decoder: TrainDecoderStage | None = Field(None, description="Stage 1.")
    latent_stats: LatentStatsStage | None = Field(None, description="Latent statistics.")
    train_denoiser: TrainDenoiserStage | None = Field(None, description="Stage 2.")
    sample: SampleStage | None = Field(None, description="Sampling.")
    evaluate: EvaluateStage | None = Field(None, description="Evaluation.")
