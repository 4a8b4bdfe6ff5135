"""Stage ``train_denoiser`` (stage 2): flow matching of a denoiser on (cached) RAE latents.

Every random draw of a step (noise, times, label drops) is keyed by ``(seed, step, global row block)`` and
made on the rank's device for the rank's share only (:mod:`rae_framework.engine.draws`); each micro-batch
takes its slice. Hence single-process, gradient accumulation and DDP compute the same mathematical step, and
a resumed run the same bits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from rae_framework.conditioning import Conditioning
from rae_framework.data.cache_plan import cache_folder
from rae_framework.data.captions import CaptionSource, caption_source
from rae_framework.data.datasets import BatchPlan, PlannedBatches, RankShare, build_dataset
from rae_framework.data.latent_cache import LatentCache, build_latent_cache
from rae_framework.data.loading import LoadedLatents, LoaderSettings, StackImages
from rae_framework.data.webdataset_index import expand_shards, shard_identity
from rae_framework.engine import (EMA, RunState, StepDraws, TrainingJob, TrainingTask, build_optimizer, build_rae,
                                  build_scheduler, clip_gradients, denoiser_draws, encode_fn, json_sha256,
                                  module_tensors, no_sync, save_final_weights, train, unwrap, wrap_model)
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Conditioner, Denoiser, NoiseSchedule, Stage
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


def check_label_dropout(denoiser: Denoiser, stage: TrainDenoiserStage) -> None:
    """Label drops need the denoiser's null-class row (``class_dropout_prob > 0`` in its config)."""
    if getattr(denoiser.config, "text_conditioned", False):  # prompts drop to the conditioner's null condition
        return
    own = getattr(denoiser.config, "class_dropout_prob", None)
    if stage.engine_dropout > 0 and own == 0:
        raise ConfigError("stages.train_denoiser.class_dropout > 0 but the denoiser has class_dropout_prob 0 "
                          "(no null-class embedding): set the denoiser's class_dropout_prob > 0")


def check_conditioner(denoiser: Denoiser, conditioner: Conditioner | None, stage: TrainDenoiserStage) -> None:
    """A text conditioner needs a text denoiser and the engine's (seeded) condition dropout."""
    if conditioner is None or conditioner.input_kind != "text":
        return
    if not (getattr(denoiser, "text_dim", None) or getattr(denoiser, "pooled_dim", None)):
        raise ConfigError("components.conditioner is a text conditioner but the denoiser has no text path "
                          "(text_dim / pooled_dim): build both in one assembly, which derives them")
    if stage.label_dropout == "model":
        raise ConfigError("stages.train_denoiser.label_dropout 'model' drops class labels inside the denoiser; a "
                          "text run drops prompts in the engine: use label_dropout 'engine'")


def build_stage2_state(denoiser: Denoiser, stage: TrainDenoiserStage, device: torch.device) -> Stage2State:
    """Model on ``device``, its EMA copy, AdamW and the LR schedule."""
    model = denoiser.to(device)
    optimizer = build_optimizer(model.parameters(), stage.optimizer)
    return Stage2State(model, EMA(model, stage.ema_decay), optimizer,
                       build_scheduler(optimizer, stage.optimizer, stage.steps))


def _autocast(stage: TrainDenoiserStage, device: torch.device):
    if stage.mixed_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def accumulate_gradients(train_model: nn.Module, schedule: NoiseSchedule, x: torch.Tensor,
                         y: torch.Tensor | Conditioning, draws: StepDraws, stage: TrainDenoiserStage,
                         share: RankShare, world_size: int = 1, null: Conditioning | None = None) -> torch.Tensor:
    """Backward of ``sum(loss) / global_batch`` over this rank's micro-batches of ``share.micro`` rows;
    returns the loss sum. ``y``: labels (dropped rows -> the null label), or a Conditioning (dropped rows ->
    the rows of the conditioner's ``null``), with the same drop draws."""
    if isinstance(y, Conditioning):
        y = y.where(draws.drop, null)
    else:
        y = torch.where(draws.drop, torch.full_like(y, unwrap(train_model).num_classes), y)
    total = torch.zeros((), device=x.device)
    for index, start in enumerate(range(0, x.shape[0], share.micro)):
        rows = slice(start, start + share.micro)
        y_rows = y.rows(rows) if isinstance(y, Conditioning) else y[rows]
        with no_sync(train_model, index < stage.grad_accumulation - 1), _autocast(stage, x.device):
            losses = schedule.loss_at(train_model, x[rows], y_rows, draws.noise[rows], draws.t[rows])
        # DDP averages gradients over ranks: scale so the result is the global-batch mean.
        (losses.sum() * (world_size / stage.batch_size)).backward()
        total += losses.detach().sum()
    return total


def optimizer_step(state: Stage2State, stage: TrainDenoiserStage) -> float:
    """Clip, step, schedule, EMA; returns the gradient norm before clipping."""
    grad_norm = clip_gradients(state.model.parameters(), stage.optimizer.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.model)
    return grad_norm


class DenoiserTraining(TrainingTask):
    """Stage 2 for the shared loop: flow matching of ``denoiser`` on the latents of ``source``."""

    def __init__(self, denoiser: Denoiser, schedule: NoiseSchedule, source: LatentSource,
                 stage: TrainDenoiserStage, job: TrainingJob, flips: bool, conditioner: Conditioner | None = None,
                 captions: CaptionSource | None = None) -> None:
        check_label_dropout(denoiser, stage)
        check_conditioner(denoiser, conditioner, stage)
        self.stage, self.schedule, self.source, self.job = stage, schedule, source, job
        self.conditioner = None if conditioner is None else conditioner.to(job.context.device).eval()
        self.captions = captions
        self.share = job.share(stage.batch_size, stage.grad_accumulation)
        self.plan = BatchPlan(source.num_samples, job.seed, flips)
        self.state = build_stage2_state(denoiser, stage, job.context.device)
        self.train_model: nn.Module = self.state.model

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {"model": self.state.model, "ema": self.state.ema.model}

    def checkpoint_objects(self) -> dict[str, object]:
        return {"optimizer": self.state.optimizer, "scheduler": self.state.scheduler}

    def prepare(self, job: TrainingJob) -> None:
        self.train_model = wrap_model(self.state.model, job.context)
        if self.stage.compile:
            self.train_model = torch.compile(self.train_model)
        # The engine drops labels itself (deterministic, rank-consistent); the model's own random drop is off.
        self.state.model.train(self.stage.label_dropout == "model")

    def batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        context = self.job.context
        if hasattr(self.source, "follow"):  # a prefetching source loads the rest of this rank's plan ahead
            self.source.follow(PlannedBatches(self.plan, self.stage.batch_size, start_step, self.stage.steps,
                                              context.rank, context.world_size))
        for step in range(start_step, self.stage.steps):
            items = self.plan.batch(step, self.stage.batch_size, context.rank, context.world_size)
            latents, labels = self.source.batch(items)
            yield latents, self._condition(items, labels)

    def _condition(self, items, labels: torch.Tensor) -> torch.Tensor | Conditioning:
        """The rows' condition: their labels without a conditioner (as always), else its encoding of the
        labels or of the rows' captions."""
        if self.conditioner is None:
            return labels
        if self.conditioner.input_kind == "text":
            if self.captions is None:
                raise ConfigError("a text conditioner needs captions for the training rows")
            return self.conditioner.encode(self.captions.captions(items, labels))
        return self.conditioner.encode(labels)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward and backward of the step's micro-batches; the global batch's mean loss (float64)."""
        context, (x, y) = self.job.context, batch
        draws = denoiser_draws(self.schedule, seed=self.job.seed, stream=STREAM_STAGE2, step=self.state.step,
                               start=self.share.start, stop=self.share.stop,
                               latent_shape=self.state.model.latent_shape, class_dropout=self.stage.engine_dropout,
                               device=context.device)
        null = None if self.conditioner is None else self.conditioner.null(len(y))
        total = accumulate_gradients(self.train_model, self.schedule, x.to(context.device), y.to(context.device),
                                     draws, self.stage, self.share, context.world_size, null)
        return context.all_reduce_sum(total).double() / self.stage.batch_size, {}

    def update(self, batch: tuple[torch.Tensor, torch.Tensor], loss: torch.Tensor) -> dict[str, float]:
        return {"grad_norm": optimizer_step(self.state, self.stage)}

    def learning_rate(self) -> float:
        return self.state.scheduler.get_last_lr()[0]


def train_denoiser(denoiser: Denoiser, schedule: NoiseSchedule, source: LatentSource, stage: TrainDenoiserStage,
                   job: TrainingJob, *, flips: bool = False, conditioner: Conditioner | None = None,
                   captions: CaptionSource | None = None) -> Stage2State:
    """Train ``denoiser`` for ``stage.steps`` optimiser steps; returns the final state (EMA included)."""
    task = DenoiserTraining(denoiser, schedule, source, stage, job, flips, conditioner, captions)
    train(task, stage, job)
    return task.state


def cache_key(run: RunState, flips: bool, dtype: str) -> str:
    """What a latent cache depends on: encoder, data (for shards also their names, sizes and mtimes; the data
    section names the image and caption keys), autoencoder settings, statistics, flips, storage dtype (not the
    run's seed: runs with other seeds share the cache; of the autoencoder settings, only those the stage's input
    hash counts: eval-mode encoding never applies the decoder's training noise; not a captions.jsonl: the cache
    holds latents by dataset index, and captions are looked up by that index at every step)."""
    stats, data = run.record("latent_stats"), run.assembly.data
    shards = {"shards": shard_identity(expand_shards(data.shards))} if data.source == "webdataset" else {}
    return json_sha256({"data": data.model_dump(exclude={"num_workers", "captions"}), **shards,
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
    cache = build_latent_cache(folder, encode, dataset, latent_shape=run.assembly.latent_shape, flips=flips,
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
        conditioner = run.optional("conditioner")
        captions = (caption_source(run.assembly.data, self.config.caption_template)
                    if getattr(conditioner, "input_kind", None) == "text" else None)
        result = train_denoiser(run.component("denoiser"), run.component("schedule"), source, self.config,
                                TrainingJob.of(run, "train_denoiser"), flips=flips, conditioner=conditioner,
                                captions=captions)
        save_final_weights(run, self.config.spec, {"denoiser": module_tensors(result.model),
                                                   "denoiser_ema": module_tensors(result.ema.model)})
