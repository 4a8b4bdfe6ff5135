"""The training loop that every training stage shares.

A training stage supplies a :class:`TrainingTask`: what it trains and checkpoints (its modules, optimisers,
schedulers, EMA copies), its batches, its loss and its update. :func:`train` owns the rest, identically for
every stage:

- resume from the newest intact checkpoint of ``checkpoints/<stage>/`` (weights, optimiser states, RNG states,
  step): a damaged one (a file missing, cut, or not matching the manifest's sha256) is named in a warning,
  set aside as ``step_XXXXXXXX.damaged`` and the previous one is tried;
- the task's ``prepare`` (DDP wrapping, ``torch.compile``, train modes) after the weights are restored;
- per step: the task's loss, the divergence check (every rank stops together, naming the last good
  checkpoint), the task's update, logging every ``log_every`` steps (the loss, the task's scalars, the learning
  rate), the task's periodic work, the checkpoint (rank 0 writes, every rank waits), the progress line and
  the ``on_step`` hook;
- preemption: on SIGTERM, SIGUSR1 or SIGUSR2 every rank finishes its step, the ranks agree, rank 0 checkpoints
  that step (whatever ``checkpoint_every`` says) and the run stops with :class:`~rae_framework.errors.PreemptedError`.

A checkpoint holds ``<name>.safetensors`` per module of :meth:`TrainingTask.checkpoint_modules` and, in
``state.pt``, the state dict of each object of :meth:`TrainingTask.checkpoint_objects`, the RNG states and the
step. The step's random draws are keyed by ``(seed, stream, step, rows)`` (:mod:`rae_framework.engine.draws`),
so a resumed run computes the same bits as an uninterrupted one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rae_framework.data.datasets import RankShare, rank_share
from rae_framework.engine.checkpoints import CheckpointManager, module_tensors, rng_state, set_rng_state
from rae_framework.engine.chunk_work import signal_name
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import RunLogger, progress
from rae_framework.errors import CheckpointDamagedError, PreemptedError, TrainingDivergedError
from rae_framework.stage import TrainingStageConfig, TrainingTask


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


def train(task: TrainingTask, settings: TrainingStageConfig, job: TrainingJob) -> None:
    """Run ``task`` from its newest checkpoint (when ``job.resume``) to ``settings.steps`` optimiser steps.

    On SIGTERM, SIGUSR1 or SIGUSR2 (a scheduler's notice before it kills the job) every rank finishes the current
    step, the ranks agree on it, rank 0 checkpoints it, and :class:`PreemptedError` is raised (the CLI's exit 75)."""
    manager = CheckpointManager(job.checkpoint_dir, settings.keep_last, keep_steps=settings.save_at)
    if job.resume:
        resume(task, manager, job)
    task.prepare(job)
    bar = progress(settings.steps, job.name, enabled=job.context.is_main, initial=task.state.step)
    try:
        with PreemptionNotice() as notice:
            for batch in task.batches(task.state.step):
                if task.state.step >= settings.steps:
                    break
                loss = train_step(task, batch, settings, job, manager)
                bar.set_postfix(loss=f"{loss:.4f}")
                bar.update(1)
                if job.on_step is not None:
                    job.on_step(task.state.step, loss)
                if notice.agreed(job.context):
                    stop_preempted(task, settings, job, manager, notice)
    finally:
        bar.close()
        task.finish()


class PreemptionNotice:
    """While entered (in the main thread), SIGTERM, SIGUSR1 and SIGUSR2 only note their arrival; the previous
    handlers come back on exit. SIGUSR2 is submitit's notice (``rae submit``: ``#SBATCH --signal=USR2@<delay>``), so
    that a job it launched checkpoints the finished step before submitit requeues it."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionNotice:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._note) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _note(self, number: int, frame: object) -> None:
        self.received = number

    def agreed(self, context: DistContext) -> bool:
        """Whether any rank received a notice (every rank gets the same answer at the same step)."""
        flag = torch.tensor([float(self.received is not None)], device=context.device)
        return bool(context.all_reduce_sum(flag).item() > 0)


def stop_preempted(task: TrainingTask, settings: TrainingStageConfig, job: TrainingJob,
                   manager: CheckpointManager, notice: PreemptionNotice) -> None:
    """Checkpoint the finished step (unless this step just wrote one), then raise :class:`PreemptedError`."""
    step = task.state.step
    if job.context.is_main and not settings.checkpoint_due(step):
        save_checkpoint(task, manager)
    job.context.barrier()
    message = (f"{job.name}: preempted ({signal_name(notice.received)}) after step {step}/{settings.steps}; saved checkpoint "
               f"{manager.path(step)}. Rerun the same command to resume from it")
    job.logger.info(message)
    raise PreemptedError(message, notice.received)


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


def resume(task: TrainingTask, manager: CheckpointManager, job: TrainingJob) -> None:
    """Restore the task from the newest intact checkpoint, if any.

    Rank 0 checks the checkpoints newest first (a damaged one is named in a warning and set aside, see
    :meth:`CheckpointManager.newest_intact`); the ranks agree on its step and the others load that step without
    hashing it again. When every checkpoint is damaged, every rank raises :class:`CheckpointDamagedError`."""
    found, error = None, None
    if job.context.is_main:
        try:
            warn = lambda message: job.logger.warning(f"{job.name}: {message}")  # noqa: E731
            found = manager.newest_intact(warn, required=task.checkpoint_modules())
        except CheckpointDamagedError as damaged:
            error = damaged
    # what rank 0 found (the others add 0): -1 every checkpoint damaged, 0 none, step + 1 resume from step
    said = -1 if error is not None else (0 if found is None else found[0] + 1)
    agreed = int(job.context.all_reduce_sum(torch.tensor([said], dtype=torch.int64, device=job.context.device)).item())
    if agreed < 0:
        raise error or CheckpointDamagedError(f"{job.name}: every checkpoint in {manager.folder} is damaged")
    if agreed == 0:
        return
    step, weights, state = found if found is not None else (agreed - 1, *manager.load(agreed - 1, verify=False))
    restore(task, weights, state)
    job.logger.info(f"{job.name}: resumed from step {step}")


def load_checkpoint(task: TrainingTask, manager: CheckpointManager, step: int | None = None) -> None:
    """Restore the task's modules, objects, the RNG states and its step from checkpoint ``step`` (default: the
    newest), verified (:class:`CheckpointDamagedError` when damaged)."""
    restore(task, *manager.load(step, required=task.checkpoint_modules()))


def restore(task: TrainingTask, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
    """Load checkpoint contents into the task's modules and objects, and restore the RNG states and the step."""
    for name, module in task.checkpoint_modules().items():
        module.load_state_dict(weights[name])
    for name, item in task.checkpoint_objects().items():
        item.load_state_dict(state[name])
    set_rng_state(state["rng"])
    task.state.step = int(state["step"])
