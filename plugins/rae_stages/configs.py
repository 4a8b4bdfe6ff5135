"""Torch-free settings and specs of the five first-party stages (the values under ``stages.<name>``).

Each Config carries its stage's :class:`~rae_framework.stage.StageSpec` (``spec``): the runner, the input hash
and the assembly's stage rules are derived from it (see :mod:`rae_framework.stage`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rae_framework.config import OptimizerConfig
from rae_framework.data.cache_plan import LatentCacheConfig
from rae_framework.errors import ConfigError
from rae_framework.stage import StageCheckContext, StageConfig, StageProblem, StageSpec, TrainingStageConfig


class TrainDecoderStage(TrainingStageConfig):
    """Stage 1: train the decoder (encoder frozen) with L1 + LPIPS + GAN."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=100, summary="train the decoder on the frozen encoder's (noise-augmented) latents",
        roles=("encoder", "decoder"), optional_roles=("discriminator", "perceptual"),
        sections=("autoencoder", "data"),
        outputs={"decoder": "checkpoints/decoder.safetensors", "decoder_ema": "checkpoints/decoder_ema.safetensors"},
        resumable=True)

    batch_size: int = Field(32, gt=0, description="Global batch size.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Decoder optimiser.")
    ema_decay: float = Field(0.999, ge=0.0, le=1.0, description="EMA decay of the decoder weights.")
    l1_weight: float = Field(1.0, ge=0.0, description="Weight of the L1 reconstruction loss.")
    perceptual_weight: float = Field(1.0, ge=0.0, description="Weight of the perceptual (LPIPS) loss.")
    gan_weight: float = Field(0.75, ge=0.0, description="Weight of the adaptive GAN generator loss.")
    discriminator_start_step: int = Field(0, ge=0, description="Step from which the discriminator trains.")
    gan_start_step: int = Field(0, ge=0, description="Step from which the GAN term enters the decoder loss.")
    sample_every: int = Field(500, gt=0, description="Steps between saved reconstructions (and held-out "
                                                     "PSNR/SSIM when those metrics are registered).")
    eval_images: int = Field(256, gt=0, description="Held-out images used for PSNR/SSIM during training.")
    gan_loss: str = Field("hinge", description="Registered adversarial loss (kind 'gan_loss') giving the "
                                                "discriminator's and the generator's losses, e.g. 'hinge'.")
    max_adaptive_weight: float = Field(1e4, gt=0.0, description="Upper clamp of the adaptive GAN weight.")
    diffaug: str = Field("color,translation,cutout",
                         description="Policy of the registered 'diffaug' augmentation (kind 'augmentation') on the "
                                     "discriminator's inputs: comma-separated operations applied in order ('' = "
                                     "off). The reference uses 'color,translation'.")
    holdout_metrics: list[str] | None = Field(None, description="Registered paired metrics computed on the held-out "
                                                                "images at every sample_every; None = 'psnr' and "
                                                                "'ssim', those of them that are registered.")

    def holdout_metric_names(self, registered_metrics: list[str]) -> list[str]:
        """The held-out metrics to compute, given the registered metric names."""
        if self.holdout_metrics is not None:
            return list(self.holdout_metrics)
        return [name for name in ("psnr", "ssim") if name in registered_metrics]

    def check(self, context: StageCheckContext) -> list[StageProblem]:
        """The GAN loss, the augmentation policy and the held-out metrics are registered and valid; loss terms
        without the component that computes them are warned about."""
        problems = skipped_terms(self, context)
        if "discriminator" in context.declared_roles:
            problems += registered(context, "gan_loss", [self.gan_loss], ("gan_loss",), indexed=False)
            if self.diffaug:
                problems += valid_params(context, "augmentation", "diffaug", {"policy": self.diffaug}, ("diffaug",))
        return problems + registered(context, "metric", self.holdout_metrics or [], ("holdout_metrics",))



# latent_stats and train_denoiser build the autoencoder only to encode, in eval mode: the decoder (built
# untrained) and the decoder-training noise (train mode only) do not change what they compute, so a sweep over
# them (Finding 3, decoder noise tau) shares one denoiser.
ENCODE_ONLY = ("components.decoder", "autoencoder.noise_tau")


class LatentStatsStage(StageConfig):
    """Exact per-position latent mean/variance over the training set."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=200, summary="exact per-position mean and variance of the latents over the training split",
        roles=("encoder", "decoder"), sections=("autoencoder", "data"), ignores=ENCODE_ONLY,
        outputs={"latent_stats": "checkpoints/latent_stats.safetensors"})

    batch_size: int = Field(64, gt=0, description="Encoding batch size.")


class TrainDenoiserStage(TrainingStageConfig):
    """Stage 2: flow matching on cached latents."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=300, summary="flow matching of the denoiser on the normalised latents",
        roles=("encoder", "decoder", "denoiser", "schedule"), optional_roles=("conditioner",),
        sections=("autoencoder", "data"), reads=("latent_stats",), ignores=ENCODE_ONLY,
        outputs={"denoiser": "checkpoints/denoiser.safetensors",
                 "denoiser_ema": "checkpoints/denoiser_ema.safetensors"},
        resumable=True)

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
    cache_batch_size: int = Field(64, gt=0, description="Images per encoder batch while building the latent cache.")
    caption_template: str = Field("a {name}", description="Text conditioner only: each row's caption, from its "
                                                          "class name ('a seven'), until captioned datasets "
                                                          "exist.")

    @property
    def engine_dropout(self) -> float:
        """The probability with which the engine drops labels (0 when the denoiser drops them itself)."""
        return self.class_dropout if self.label_dropout == "engine" else 0.0


class SampleStage(StageConfig):
    """Generate class-conditional samples into samples/samples.npz and samples/grid.png."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=400, summary="class-conditional samples with the (EMA) denoiser, decoded by the RAE",
        roles=("encoder", "decoder", "denoiser", "schedule", "sampler"),
        optional_roles=("guide", "guidance", "conditioner"),
        sections=("autoencoder",), reads=("train_decoder", "latent_stats", "train_denoiser"),
        outputs={"samples": "samples/samples.npz", "grid": "samples/grid.png"})

    per_class: int = Field(100, gt=0, description="Samples per class (labels 'equal').")
    labels: Literal["equal", "random"] = Field("equal", description="How class labels are chosen.")
    batch_size: int = Field(100, gt=0, description="Samples per batch.")
    use_ema: bool = Field(True, description="Sample with the EMA weights.")
    grid_columns: int = Field(8, gt=0, description="Samples per class row in grid.png.")
    grid_max_classes: int = Field(16, gt=0, description="At most this many class rows in grid.png.")
    prompts: list[str] | None = Field(None, description="Text conditioner only: the prompts, per_class samples "
                                                        "each (label = prompt index); None = each class's "
                                                        "caption (train_denoiser.caption_template), labels = "
                                                        "the classes.")


class EvaluateStage(StageConfig):
    """Metrics into metrics.json."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=500, summary="registered metrics of samples and reconstructions into metrics.json",
        optional_roles=("encoder", "decoder"), sections=("autoencoder", "data"),
        reads=("train_decoder", "latent_stats", "sample"), settings_of=("sample",),
        ignores=("stage.save_every",),  # when progress is saved does not change what is computed
        outputs={"metrics": "metrics.json"})

    metrics: list[str] = Field(default_factory=list, description="Registered metric names to compute.")
    reference: str | None = Field(None, description="Reference batch (ADM .npz or image folder) for gFID etc.; "
                                                    "None = the held-out split of the training data.")
    batch_size: int = Field(64, gt=0, description="Images per metric update.")
    save_every: int = Field(50, gt=0, description="Batches per rank between saves of a metric's state under "
                                                   "checkpoints/evaluate/ (a killed evaluation redoes at most "
                                                   "this many; SIGTERM/SIGUSR1 save at once).")

    def check(self, context: StageCheckContext) -> list[StageProblem]:
        """Every metric is registered (by component or preset name)."""
        return registered(context, "metric", self.metrics, ("metrics",))


def registered(context: StageCheckContext, kind: str, names: list[str], path: tuple[str, ...], *,
               indexed: bool = True) -> list[StageProblem]:
    """An error for each of ``names`` (a list setting at ``path`` when ``indexed``) that is neither a registered
    ``kind`` component nor one's preset."""
    registry = context.session.registry
    known = set(registry.names(kind)) if kind in registry.kinds else set()
    known |= {preset.name for preset in context.session.presets.all(kind) if preset.component in known}
    return [StageProblem((*path, index) if indexed else path,
                         f"Unknown {kind} '{name}'. Available: {', '.join(sorted(known)) or 'none'}", value=name)
            for index, name in enumerate(names) if name not in known]


def valid_params(context: StageCheckContext, kind: str, name: str, params: dict, path: tuple[str, ...]
                 ) -> list[StageProblem]:
    """An error when component ``kind``/``name`` is missing or rejects ``params`` (its own Config decides)."""
    if registered(context, kind, [name], path, indexed=False):
        return [StageProblem(path, f"needs the {kind} '{name}' (its plugin is missing or disabled)")]
    try:
        context.session.make_config(kind, name, params)
    except ConfigError as error:  # raised by the component's own Config
        return [StageProblem(path, str(error).splitlines()[-1].strip(), value=next(iter(params.values())))]
    return []


def skipped_terms(stage: TrainDecoderStage, context: StageCheckContext) -> list[StageProblem]:
    """Loss terms with a weight but without the component that computes them (the stage skips them)."""
    terms = [("perceptual_weight", "perceptual"), ("gan_weight", "discriminator")]
    return [StageProblem((weight,), f"{getattr(stage, weight)} but no '{role}' component, so this term is skipped; "
                                    "add the component or set the weight to 0", warning=True)
            for weight, role in terms if getattr(stage, weight) > 0 and role not in context.declared_roles]
