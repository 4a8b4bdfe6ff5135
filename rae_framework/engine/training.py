"""The training loop that every training stage shares.

A training stage supplies a :class:`TrainingTask`: what it trains and checkpoints (its modules, optimisers,
schedulers, EMA copies), its batches, its loss and its update. :func:`train` owns the rest, identically for
every stage:

- resume from the newest checkpoint of ``checkpoints/<stage>/`` (weights, optimiser states, RNG states, step);
- the task's ``prepare`` (DDP wrapping, ``torch.compile``, train modes) after the weights are restored;
- per step: the task's loss, the divergence check (every rank stops together, naming the last good
  checkpoint), the task's update, logging every ``log_every`` steps (the loss, the task's scalars, the learning
  rate), the task's periodic work, the checkpoint (rank 0 writes, every rank waits), the progress line and
  the ``on_step`` hook.

A checkpoint holds ``<name>.safetensors`` per module of :meth:`TrainingTask.checkpoint_modules` and, in
``state.pt``, the state dict of each object of :meth:`TrainingTask.checkpoint_objects`, the RNG states and the
step. The step's random draws are keyed by ``(seed, stream, step, rows)`` (:mod:`rae_framework.engine.draws`),
so a resumed run computes the same bits as an uninterrupted one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rae_framework.data.datasets import RankShare, rank_share
from rae_framework.engine.checkpoints import CheckpointManager, module_tensors, rng_state, set_rng_state
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import RunLogger, progress
from rae_framework.errors import TrainingDivergedError
from rae_framework.stage import TrainingStageConfig


@dataclass(frozen=True)
class TrainingJob:
    """Where and how a training stage runs: the one context object its loop receives."""

    name: str  # the stage's name, in logs, metrics and messages
    checkpoint_dir: Path  # step checkpoints
    logger: RunLogger
    seed: int = 0  # keys the step's random draws and the data order
    out_dir: Path | None = None  # the run directory (periodic pictures), None when the task writes none
    context: DistContext = field(default_factory=DistContext)
    resume: bool = True  # continue from the newest checkpoint when there is one
    on_step: Callable[[int, float], None] | None = None  # called with (step, loss) after every step

    @classmethod
    def of(cls, run, stage: str) -> TrainingJob:
        """The job of training stage ``stage`` in ``run`` (a :class:`~rae_framework.engine.RunState`)."""
        return cls(stage, run.checkpoint_dir(stage), run.logger, run.assembly.seed, run.out_dir, run.context,
                   run.resume)

    def share(self, batch_size: int, accumulation: int = 1) -> RankShare:
        """This rank's rows of a global batch (and its micro-batch size); errors when sizes do not divide."""
        return rank_share(batch_size, self.context.rank, self.context.world_size, accumulation,
                          where=f"stages.{self.name}.batch_size")


class TrainingTask(ABC):
    """What a training stage gives :func:`train`. ``state`` is any object with an integer ``step`` (optimiser
    steps done): the loop restores it on resume and advances it after each update."""

    state: Any

    @abstractmethod
    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """Modules saved as ``<name>.safetensors`` (unwrapped: never the DDP or compiled wrapper)."""

    @abstractmethod
    def checkpoint_objects(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` saved in ``state.pt`` (optimisers, schedulers)."""

    @abstractmethod
    def batches(self, start_step: int) -> Iterable[Any]:
        """This rank's batches of steps ``start_step, start_step + 1, ...`` (at least until the last step)."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The step's scalar loss (its graph kept for :meth:`update`, or already backpropagated) and scalars
        to log; no parameter may change here, so a non-finite loss stops the run before any update."""

    @abstractmethod
    def update(self, batch: Any, loss: torch.Tensor) -> dict[str, float]:
        """The step's updates (backward where :meth:`loss` left it, optimiser, schedule, EMA); scalars to log."""

    @abstractmethod
    def learning_rate(self) -> float:
        """The current learning rate (logged as ``lr``)."""

    def prepare(self, job: TrainingJob) -> None:
        """After the weights are restored, before the first step: wrap for DDP, compile, set modes."""

    def after_step(self, job: TrainingJob, last: bool) -> None:
        """Periodic work after a step's logging, before its checkpoint (``last``: the final step)."""

    def finish(self) -> None:
        """After the loop (also when it fails): undo :meth:`prepare`'s wrapping."""


def train(task: TrainingTask, settings: TrainingStageConfig, job: TrainingJob) -> None:
    """Run ``task`` from its newest checkpoint (when ``job.resume``) to ``settings.steps`` optimiser steps."""
    manager = CheckpointManager(job.checkpoint_dir, settings.keep_last, keep_steps=settings.save_at)
    if job.resume and manager.latest() is not None:
        load_checkpoint(task, manager)
        job.logger.info(f"{job.name}: resumed from step {task.state.step}")
    task.prepare(job)
    bar = progress(settings.steps, job.name, enabled=job.context.is_main, initial=task.state.step)
    try:
        for batch in task.batches(task.state.step):
            if task.state.step >= settings.steps:
                break
            loss = train_step(task, batch, settings, job, manager)
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            if job.on_step is not None:
                job.on_step(task.state.step, loss)
    finally:
        bar.close()
        task.finish()


def train_step(task: TrainingTask, batch: Any, settings: TrainingStageConfig, job: TrainingJob,
               manager: CheckpointManager) -> float:
    """One optimiser step of ``task`` with its divergence check, logging, periodic work and checkpoint."""
    loss, logged = task.loss(batch)
    check_finite(loss, task.state.step, job, manager)
    logged = {"loss": float(loss.detach()), **logged, **task.update(batch, loss)}
    task.state.step += 1
    step = task.state.step
    if settings.log_due(step):
        job.logger.scalars(job.name, step, {**logged, "lr": task.learning_rate()}, total=settings.steps)
    task.after_step(job, last=step == settings.steps)
    if settings.checkpoint_due(step):
        if job.context.is_main:
            save_checkpoint(task, manager)
        job.context.barrier()
    return logged["loss"]


def check_finite(loss: torch.Tensor, step: int, job: TrainingJob, manager: CheckpointManager) -> None:
    """Raise :class:`TrainingDivergedError` on every rank when the loss of any rank is not finite."""
    finite = job.context.all_reduce_sum(torch.isfinite(loss.detach()).float().reshape(1))
    if int(finite.item()) == job.context.world_size:
        return
    last = manager.latest()
    raise TrainingDivergedError(
        f"{job.name}: loss is {float(loss.detach())} at step {step + 1}; stopped. Last good checkpoint: "
        f"{manager.path(last) if last is not None else 'none'} (lower the learning rate or enable clipping)")


def save_checkpoint(task: TrainingTask, manager: CheckpointManager) -> Path:
    """Write the task's modules, objects and the RNG states at its current step."""
    weights = {name: module_tensors(module) for name, module in task.checkpoint_modules().items()}
    objects = {name: item.state_dict() for name, item in task.checkpoint_objects().items()}
    step = task.state.step
    return manager.save(step, weights, {**objects, "rng": rng_state(), "data_position": step})


def load_checkpoint(task: TrainingTask, manager: CheckpointManager) -> None:
    """Restore the task's modules, objects, the RNG states and its step from the newest checkpoint."""
    weights, state = manager.load()
    for name, module in task.checkpoint_modules().items():
        module.load_state_dict(weights[name])
    for name, item in task.checkpoint_objects().items():
        item.load_state_dict(state[name])
    set_rng_state(state["rng"])
    task.state.step = int(state["step"])
