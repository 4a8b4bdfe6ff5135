"""The five stages as ``run_<stage>(state, logger, resume=...) -> output files``: assembly -> loops.

Each function builds what it needs from the :class:`RunState` (components, the RAE with the weights and
statistics earlier stages left in the run directory), calls the loop of its own module and writes its final
outputs on rank 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from rae_framework.data.datasets import build_dataset
from rae_framework.data.image_rows import DatasetImages, reference_images
from rae_framework.data.cache_plan import cache_folder
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.data.loading import LoadedLatents, LoaderSettings, StackImages
from rae_framework.engine.checkpoints import module_tensors, save_weights
from rae_framework.engine.evaluation import (build_metric, evaluate_metric, load_samples,
                                             write_metrics)
from rae_framework.engine.latent_statistics_stage import STATISTICS_FILE, compute_latent_statistics
from rae_framework.engine.logging import RunLogger
from rae_framework.engine.run_state import RunState, json_sha256
from rae_framework.engine.sampling import run_sampling
from rae_framework.engine.statistics import load_statistics
from rae_framework.engine.stage1 import Stage1Parts, reconstruct, train_decoder
from rae_framework.engine.stage2 import train_denoiser
from rae_framework.errors import ConfigError

DECODER_FILE, DECODER_EMA_FILE = "decoder.safetensors", "decoder_ema.safetensors"
DENOISER_FILE, DENOISER_EMA_FILE = "denoiser.safetensors", "denoiser_ema.safetensors"


def stage_enabled(state: RunState, name: str) -> bool:
    """Whether the assembly runs stage ``name`` (only then are its outputs in the run directory used)."""
    settings = getattr(state.assembly.stages, name)
    return settings is not None and settings.enabled


def statistics_file(state: RunState, computed: bool) -> Path | None:
    """Latent statistics to normalise with: this run's computed ones (when ``computed`` and the
    latent_stats stage is part of the assembly), else ``autoencoder.statistics``, else None (identity)."""
    run_file = state.checkpoints / STATISTICS_FILE
    if computed and stage_enabled(state, "latent_stats") and run_file.is_file():
        return run_file
    configured = state.assembly.autoencoder.statistics
    return Path(configured) if configured else None


def build_rae(state: RunState, *, trained_decoder: bool = True, computed_statistics: bool = True):
    """The assembly's RAE with the run's trained (EMA) decoder and latent statistics (see above)."""
    from rae_framework.autoencoder import RepresentationAutoencoder

    if not state.has("decoder"):
        raise ConfigError("components.decoder: the run engine builds the RAE (encoder + decoder) for every "
                          "stage that encodes or decodes; add a decoder to the assembly")
    decoder = state.component("decoder")
    weights = state.checkpoints / DECODER_EMA_FILE
    if trained_decoder and stage_enabled(state, "train_decoder") and weights.is_file():
        decoder.load_state_dict(load_file(str(weights)))
    rae = RepresentationAutoencoder(state.component("encoder"), decoder, state.assembly.autoencoder)
    path = statistics_file(state, computed_statistics)
    if path is not None:
        rae.set_statistics(*load_statistics(path))
    return rae.to(state.context.device).eval()


def encode_fn(rae, device: torch.device, precision: str = "no"):
    """``images (B, 3, H, W) in [0, 1] -> normalised latents (B, C, h, w)`` float32, eval mode, no grad, on
    ``device`` (under bf16 autocast when ``precision`` is ``bf16``)."""
    def encode(images: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        with torch.no_grad(), autocast:
            return rae.encode(images.to(device)).float()
    return encode


def holdout_images(state: RunState, limit: int | None = None) -> torch.Tensor:
    """``(M, 3, H, W)`` images of the held-out split (the first ``limit``)."""
    dataset = build_dataset(state.assembly.data, "holdout")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        return torch.zeros(0, 3, state.assembly.data.image_size, state.assembly.data.image_size)
    return torch.stack([dataset[index][0] for index in range(count)])


def stage1_parts(state: RunState, stage) -> Stage1Parts:
    """Discriminator, perceptual loss, DiffAugment and held-out metrics, where the assembly has them."""
    parts = Stage1Parts(discriminator=state.optional("discriminator"), perceptual=state.optional("perceptual"))
    if parts.discriminator is not None and stage.diffaug:
        from rae_gan.configs import DiffAugmentConfig
        from rae_gan.diffaug import DiffAugment

        parts.augment = DiffAugment(DiffAugmentConfig(policy=stage.diffaug))
    registry = state.session.registry
    for name in ("psnr", "ssim"):
        if "metric" in registry.kinds and registry.contains("metric", name):
            parts.metrics[name] = state.session.build("metric", name)
    return parts


def _save_final(state: RunState, weights: dict[str, dict[str, torch.Tensor]]) -> list[Path]:
    paths = [state.checkpoints / name for name in weights]
    if state.context.is_main:
        for path, tensors in zip(paths, weights.values()):
            save_weights(path, tensors)
    state.context.barrier()
    return paths


def run_train_decoder(state: RunState, logger: RunLogger, *, resume: bool = True) -> list[Path]:
    """Stage 1 -> ``checkpoints/decoder.safetensors`` and ``decoder_ema.safetensors``."""
    stage, data = state.assembly.stages.train_decoder, state.assembly.data
    rae = build_rae(state, trained_decoder=False, computed_statistics=False)
    holdout = holdout_images(state, stage.eval_images)
    result = train_decoder(rae, build_dataset(data, "train"), holdout, stage, stage1_parts(state, stage),
                           checkpoint_dir=state.checkpoint_dir("train_decoder"), out_dir=state.out_dir,
                           seed=state.assembly.seed, logger=logger, context=state.context, resume=resume,
                           flips=data.horizontal_flip, num_workers=data.num_workers)
    return _save_final(state, {DECODER_FILE: module_tensors(result.decoder),
                               DECODER_EMA_FILE: module_tensors(result.ema.model)})


def run_latent_stats(state: RunState, logger: RunLogger, *, resume: bool = True) -> list[Path]:
    """Exact latent mean/var over the training split -> ``checkpoints/latent_stats.safetensors``."""
    del resume  # one streamed pass; nothing to resume
    stage = state.assembly.stages.latent_stats
    path = state.checkpoints / STATISTICS_FILE
    rae = build_rae(state, trained_decoder=False, computed_statistics=False)
    compute_latent_statistics(rae, build_dataset(state.assembly.data, "train"), path, batch_size=stage.batch_size,
                              context=state.context, logger=logger, num_workers=state.assembly.data.num_workers)
    return [path]


def cache_key(state: RunState, flips: bool, dtype: str) -> str:
    """What a latent cache depends on: encoder, data, autoencoder settings, statistics, flips, storage dtype
    (not the run's seed: runs with other seeds share the cache)."""
    stats, data = state.record("latent_stats"), state.assembly.data
    return json_sha256({"data": data.model_dump(exclude={"num_workers"}),
                        "encoder": state.assembly.resolved()["components"]["encoder"],
                        "autoencoder": state.assembly.autoencoder.model_dump(),
                        "statistics": stats.output_hash if stats else None, "flips": flips, "dtype": dtype})


def latent_source(state: RunState, rae, stage, logger: RunLogger) -> tuple[LoadedLatents, bool]:
    """``(source, flips)``: the shared latent cache (built when missing), or on-the-fly encoding; both
    loaded by ``data.num_workers`` DataLoader workers ahead of the step."""
    data, dataset = state.assembly.data, build_dataset(state.assembly.data, "train")
    settings, device = LoaderSettings(num_workers=data.num_workers), state.context.device
    config = stage.latent_cache
    if not config.enabled:
        encode = encode_fn(rae, device, stage.mixed_precision)
        return LoadedLatents(StackImages(dataset), len(dataset), encode, device, settings), data.horizontal_flip
    flips = config.uses_flips(data.horizontal_flip)
    key = cache_key(state, flips, config.dtype)
    folder = cache_folder(config, state.out_dir, key)
    if not LatentCache.is_complete(folder, key):
        logger.info(f"train_denoiser: latent cache {folder} ({len(dataset)} images, flips {flips}, {config.dtype})")
    batch_size = state.assembly.stages.latent_stats.batch_size if state.assembly.stages.latent_stats else 64
    cache = build_latent_cache(folder, encode_fn(rae, device, stage.mixed_precision), dataset,
                               latent_shape=tuple(state.assembly.latent_shape), flips=flips, key=key,
                               batch_size=batch_size, context=state.context, dtype=config.dtype, loader=settings)
    return LoadedLatents(cache.rows, cache.num_samples, _identity, device, settings), flips


def _identity(latents: torch.Tensor) -> torch.Tensor:
    return latents


def run_train_denoiser(state: RunState, logger: RunLogger, *, resume: bool = True) -> list[Path]:
    """Stage 2 -> ``checkpoints/denoiser.safetensors`` and ``denoiser_ema.safetensors``."""
    stage = state.assembly.stages.train_denoiser
    source, flips = latent_source(state, build_rae(state, trained_decoder=False), stage, logger)
    result = train_denoiser(state.component("denoiser"), state.component("schedule"), source, stage,
                            checkpoint_dir=state.checkpoint_dir("train_denoiser"), seed=state.assembly.seed,
                            logger=logger, context=state.context, resume=resume, flips=flips)
    return _save_final(state, {DENOISER_FILE: module_tensors(result.model),
                               DENOISER_EMA_FILE: module_tensors(result.ema.model)})


def load_guide(state: RunState):
    """The autoguidance guide denoiser, with the trained weights its ``checkpoint`` names."""
    if not state.has("guide"):
        raise ConfigError("components.guide: autoguidance needs a guide denoiser (role 'guide', kind denoiser)")
    if state.assembly.spec("guide").checkpoint is None:
        raise ConfigError("components.guide.checkpoint: autoguidance needs the guide denoiser's trained weights "
                          "(e.g. an earlier or smaller run's checkpoints/denoiser_ema.safetensors)")
    return state.component("guide").to(state.context.device).eval()


def run_sample(state: RunState, logger: RunLogger, *, resume: bool = True) -> list[Path]:
    """Generate samples with the (EMA) denoiser -> ``samples/samples.npz`` and ``samples/grid.png``."""
    del resume  # sampling is seeded per batch; a rerun reproduces it
    stage, device = state.assembly.stages.sample, state.context.device
    denoiser = state.component("denoiser")
    weights = state.checkpoints / (DENOISER_EMA_FILE if stage.use_ema else DENOISER_FILE)
    if stage_enabled(state, "train_denoiser") and weights.is_file():
        denoiser.load_state_dict(load_file(str(weights)))
    elif state.assembly.spec("denoiser").checkpoint is None:
        logger.info("sample: WARNING no trained denoiser (no train_denoiser stage output and no "
                    "components.denoiser.checkpoint); sampling with untrained weights")
    guidance = state.optional("guidance")
    guide = load_guide(state) if getattr(guidance, "needs_guide", False) else None
    rae = build_rae(state)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return rae.decode(latents).clamp(0.0, 1.0)

    run_sampling(denoiser.to(device).eval(), state.component("schedule"), state.component("sampler"), decode,
                 stage, state.out_dir / "samples", seed=state.assembly.seed, guidance=guidance, guide=guide,
                 context=state.context)
    return [state.out_dir / "samples" / "samples.npz", state.out_dir / "samples" / "grid.png"]


def run_evaluate(state: RunState, logger: RunLogger, *, resume: bool = True) -> list[Path]:
    """Every metric named in ``stages.evaluate.metrics`` -> ``metrics.json``."""
    del resume
    stage = state.assembly.stages.evaluate
    reference = (reference_images(stage.reference, state.assembly.data.image_size) if stage.reference
                 else DatasetImages(build_dataset(state.assembly.data, "holdout")))
    samples = load_samples(state.out_dir / "samples" / "samples.npz")
    needs_rae = state.has("encoder") and state.has("decoder")
    rae = build_rae(state) if needs_rae else None
    reconstruct_fn = (lambda images: reconstruct(rae, rae.decoder, images)) if rae is not None else None
    results: dict[str, float] = {}
    for name in stage.metrics:
        values = evaluate_metric(name, build_metric(state.session, name), samples=samples, reference=reference,
                                 reconstruct=reconstruct_fn, batch_size=stage.batch_size, context=state.context)
        logger.info(f"evaluate: {name} = {values}")
        results.update(values)
    path = state.out_dir / "metrics.json"
    if state.context.is_main:
        write_metrics(path, results)
    state.context.barrier()
    return [path]
