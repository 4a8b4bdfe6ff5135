"""Stage ``train_denoiser`` (stage 2): flow matching of a denoiser on (cached) RAE latents.

Every random draw of a step (noise, times, label drops) is keyed by ``(seed, step, global row block)`` and
made on the rank's device for the rank's share only (:mod:`rae_framework.engine.draws`); each micro-batch
takes its slice. Hence single-process, gradient accumulation and DDP compute the same mathematical step, and
a resumed run the same bits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from rae_framework.data.cache_plan import cache_folder
from rae_framework.data.datasets import BatchPlan, PlannedBatches, build_dataset
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.data.loading import LoadedLatents, LoaderSettings, StackImages
from rae_framework.engine import (CheckpointManager, DistContext, EMA, RunLogger, RunState, StepDraws,
                                  build_optimizer, build_rae, build_scheduler, clip_gradients, denoiser_draws,
                                  encode_fn, json_sha256, module_tensors, no_sync, progress, rng_state,
                                  save_final_weights, set_rng_state, unwrap, wrap_model)
from rae_framework.errors import ConfigError, TrainingDivergedError
from rae_framework.interfaces import Denoiser, NoiseSchedule, Stage
from rae_stages.configs import TrainDenoiserStage

STREAM_STAGE2 = 2  # generator stream id, so stage-1 and stage-2 draws never coincide


class LatentSource(Protocol):
    """Anything that turns ``(index, flip)`` items into ``(latents (B, C, h, w), labels (B,))``."""

    num_samples: int

    def batch(self, items: list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and labels of the items."""


@dataclass
class Stage2State:
    """Everything stage 2 trains and checkpoints."""

    model: nn.Module  # the unwrapped denoiser
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0

    def save(self, manager: CheckpointManager) -> Path:
        """Checkpoint model, EMA, optimiser, scheduler and RNG states at the current step."""
        weights = {"model": module_tensors(self.model), "ema": module_tensors(self.ema.model)}
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": rng_state(), "data_position": self.step}
        return manager.save(self.step, weights, state)

    def load(self, manager: CheckpointManager) -> None:
        """Continue from the latest checkpoint of ``manager``."""
        weights, state = manager.load()
        self.model.load_state_dict(weights["model"])
        self.ema.load_state_dict(weights["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])


def check_label_dropout(denoiser: Denoiser, stage: TrainDenoiserStage) -> None:
    """Label drops need the denoiser's null-class row (``class_dropout_prob > 0`` in its config)."""
    own = getattr(denoiser.config, "class_dropout_prob", None)
    if stage.label_dropout == "engine" and stage.class_dropout > 0 and own == 0:
        raise ConfigError("stages.train_denoiser.class_dropout > 0 but the denoiser has class_dropout_prob 0 "
                          "(no null-class embedding): set the denoiser's class_dropout_prob > 0")


def build_stage2_state(denoiser: Denoiser, stage: TrainDenoiserStage, device: torch.device) -> Stage2State:
    """Model on ``device``, its EMA copy, AdamW and the LR schedule."""
    model = denoiser.to(device)
    optimizer = build_optimizer(model.parameters(), stage.optimizer)
    return Stage2State(model, EMA(model, stage.ema_decay), optimizer,
                       build_scheduler(optimizer, stage.optimizer, stage.steps))


def _micro_batches(stage: TrainDenoiserStage, context: DistContext) -> tuple[int, int]:
    """``(rank share of the global batch, micro-batch size)``; errors when sizes do not divide."""
    parts = context.world_size * stage.grad_accumulation
    if stage.batch_size % parts:
        raise ConfigError(f"stages.train_denoiser.batch_size {stage.batch_size} is not divisible by "
                          f"{context.world_size} processes x grad_accumulation {stage.grad_accumulation}")
    return stage.batch_size // context.world_size, stage.batch_size // parts


def _autocast(stage: TrainDenoiserStage, device: torch.device):
    if stage.mixed_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def accumulate_gradients(train_model: nn.Module, schedule: NoiseSchedule, x: torch.Tensor, y: torch.Tensor,
                         draws: StepDraws, stage: TrainDenoiserStage, context: DistContext) -> torch.Tensor:
    """Backward of ``sum(loss) / global_batch`` over this rank's micro-batches; returns the loss sum."""
    _, micro = _micro_batches(stage, context)
    null_label = unwrap(train_model).num_classes
    y = torch.where(draws.drop, torch.full_like(y, null_label), y)
    total = torch.zeros((), device=x.device)
    for index, start in enumerate(range(0, x.shape[0], micro)):
        rows = slice(start, start + micro)
        with no_sync(train_model, index < stage.grad_accumulation - 1), _autocast(stage, x.device):
            losses = schedule.loss_at(train_model, x[rows], y[rows], draws.noise[rows], draws.t[rows])
        # DDP averages gradients over ranks: scale so the result is the global-batch mean.
        (losses.sum() * (context.world_size / stage.batch_size)).backward()
        total += losses.detach().sum()
    return total


def optimizer_step(state: Stage2State, stage: TrainDenoiserStage, loss: float,
                   manager: CheckpointManager) -> float:
    """Clip, step, schedule, EMA; a non-finite loss raises :class:`TrainingDivergedError`."""
    if not torch.isfinite(torch.tensor(loss)):
        last = manager.latest()
        raise TrainingDivergedError(
            f"train_denoiser: loss is {loss} at step {state.step + 1}; stopped. Last good checkpoint: "
            f"{manager.path(last) if last is not None else 'none'} (lower the learning rate or enable clipping)")
    grad_norm = clip_gradients(state.model.parameters(), stage.optimizer.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.model)
    state.step += 1
    return grad_norm


def _prepare_training(denoiser: Denoiser, stage: TrainDenoiserStage, context: DistContext,
                      manager: CheckpointManager, resume: bool, logger: RunLogger) -> tuple[Stage2State, nn.Module]:
    check_label_dropout(denoiser, stage)
    state = build_stage2_state(denoiser, stage, context.device)
    if resume and manager.latest() is not None:
        state.load(manager)
        logger.info(f"train_denoiser: resumed from step {state.step}")
    train_model = wrap_model(state.model, context)
    if stage.compile:
        train_model = torch.compile(train_model)
    # The engine drops labels itself (deterministic, rank-consistent); the model's own random drop is off.
    state.model.train(stage.label_dropout == "model")
    return state, train_model


def train_denoiser(denoiser: Denoiser, schedule: NoiseSchedule, source: LatentSource, stage: TrainDenoiserStage,
                   *, checkpoint_dir: str | Path, seed: int, logger: RunLogger, context: DistContext | None = None,
                   resume: bool = True, flips: bool = False,
                   on_step: Callable[[int, float], None] | None = None) -> Stage2State:
    """Train ``denoiser`` for ``stage.steps`` optimiser steps; returns the final state (EMA included)."""
    context = context or DistContext()
    manager = CheckpointManager(checkpoint_dir, stage.keep_last, keep_steps=stage.save_at)
    state, train_model = _prepare_training(denoiser, stage, context, manager, resume, logger)
    plan, (share, _) = BatchPlan(source.num_samples, seed, flips), _micro_batches(stage, context)
    latent_shape = (denoiser.in_channels, denoiser.input_size, denoiser.input_size)
    dropout = stage.class_dropout if stage.label_dropout == "engine" else 0.0
    if hasattr(source, "follow"):  # a prefetching source loads the rest of this rank's plan ahead
        source.follow(PlannedBatches(plan, stage.batch_size, state.step, stage.steps, context.rank,
                                     context.world_size))
    bar = progress(stage.steps, "train_denoiser", enabled=context.is_main, initial=state.step)
    while state.step < stage.steps:
        x, y = source.batch(plan.batch(state.step, stage.batch_size, context.rank, context.world_size))
        start = context.rank * share
        draws = denoiser_draws(schedule, seed=seed, stream=STREAM_STAGE2, step=state.step, start=start,
                               stop=start + share, latent_shape=latent_shape, class_dropout=dropout,
                               device=context.device)
        total = accumulate_gradients(train_model, schedule, x.to(context.device), y.to(context.device), draws,
                                     stage, context)
        loss = float(context.all_reduce_sum(total)) / stage.batch_size
        grad_norm = optimizer_step(state, stage, loss, manager)
        _after_step(state, stage, logger, manager, context, loss, grad_norm)
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)
        if on_step is not None:
            on_step(state.step, loss)
    bar.close()
    return state


def _after_step(state: Stage2State, stage: TrainDenoiserStage, logger: RunLogger, manager: CheckpointManager,
                context: DistContext, loss: float, grad_norm: float) -> None:
    """Log every ``log_every`` steps; checkpoint every ``checkpoint_every`` steps and at the end."""
    if stage.log_due(state.step):
        lr = state.scheduler.get_last_lr()[0]
        logger.scalars("train_denoiser", state.step, {"loss": loss, "grad_norm": grad_norm, "lr": lr},
                       total=stage.steps)
    if stage.checkpoint_due(state.step):
        if context.is_main:
            state.save(manager)
        context.barrier()


def cache_key(run: RunState, flips: bool, dtype: str) -> str:
    """What a latent cache depends on: encoder, data, autoencoder settings, statistics, flips, storage dtype
    (not the run's seed: runs with other seeds share the cache; of the autoencoder settings, only those the
    stage's input hash counts: eval-mode encoding never applies the decoder's training noise)."""
    stats, data = run.record("latent_stats"), run.assembly.data
    return json_sha256({"data": data.model_dump(exclude={"num_workers"}),
                        "encoder": run.assembly.resolved()["components"]["encoder"],
                        "autoencoder": run.config_sections("train_denoiser")["autoencoder"],
                        "statistics": stats.output_hash if stats else None, "flips": flips, "dtype": dtype})


def latent_source(run: RunState, rae, stage: TrainDenoiserStage) -> tuple[LoadedLatents, bool]:
    """``(source, flips)``: the shared latent cache (built when missing), or on-the-fly encoding; both
    loaded by ``data.num_workers`` DataLoader workers ahead of the step."""
    data, dataset = run.assembly.data, build_dataset(run.assembly.data, "train")
    settings, device = LoaderSettings(num_workers=data.num_workers), run.context.device
    config, encode = stage.latent_cache, encode_fn(rae, device, stage.mixed_precision)
    if not config.enabled:
        return LoadedLatents(StackImages(dataset), len(dataset), encode, device, settings), data.horizontal_flip
    flips = config.uses_flips(data.horizontal_flip)
    key = cache_key(run, flips, config.dtype)
    folder = cache_folder(config, run.out_dir, key)
    if not LatentCache.is_complete(folder, key):
        run.logger.info(f"train_denoiser: latent cache {folder} ({len(dataset)} images, flips {flips}, "
                        f"{config.dtype})")
    cache = build_latent_cache(folder, encode, dataset, latent_shape=tuple(run.assembly.latent_shape), flips=flips,
                               key=key, batch_size=stage.cache_batch_size, context=run.context, dtype=config.dtype,
                               loader=settings)
    return LoadedLatents(cache.rows, cache.num_samples, _identity, device, settings), flips


def _identity(latents: torch.Tensor) -> torch.Tensor:
    return latents


class TrainDenoiser(Stage):
    """``train_denoiser``: stage 2 -> ``checkpoints/denoiser.safetensors`` and ``denoiser_ema.safetensors``."""

    Config = TrainDenoiserStage

    def run(self, run: RunState) -> None:
        """Train the assembly's denoiser on the RAE's normalised latents; save final and EMA weights."""
        source, flips = latent_source(run, build_rae(run, trained_decoder=False), self.config)
        result = train_denoiser(run.component("denoiser"), run.component("schedule"), source, self.config,
                                checkpoint_dir=run.checkpoint_dir("train_denoiser"), seed=run.assembly.seed,
                                logger=run.logger, context=run.context, resume=run.resume, flips=flips)
        save_final_weights(run, self.config.spec, {"denoiser": module_tensors(result.model),
                                                   "denoiser_ema": module_tensors(result.ema.model)})
