"""The shared training loop's collectives: one all-reduce per step carries both the divergence check and the
preemption flag (one host sync per step), and a notice received during a step's loss stops the loop after
that step with its checkpoint."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from rae_framework.engine import DistContext, RunLogger, train
from rae_framework.engine.training import TrainingJob
from rae_framework.errors import PreemptedError, TrainingDivergedError
from rae_framework.stage import TrainingStageConfig, TrainingTask


class CountingContext(DistContext):
    """A one-process context that counts the all-reduces the loop asks for (and their sizes)."""

    def __init__(self) -> None:
        super().__init__()
        self.reduced: list[int] = []

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.reduced.append(tensor.numel())
        return super().all_reduce_sum(tensor)


@dataclass
class Step:
    step: int = 0


class LineFit(TrainingTask):
    """Fit ``w x`` to ``2 x``; ``signal_at`` sends this process SIGTERM during that step's loss, and
    ``nan_at`` makes that step's loss NaN."""

    def __init__(self, signal_at: int | None = None, nan_at: int | None = None) -> None:
        self.state, self.weight = Step(), nn.Linear(1, 1, bias=False)
        self.optimizer = torch.optim.SGD(self.weight.parameters(), lr=0.1)
        self.signal_at, self.nan_at = signal_at, nan_at

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {"weight": self.weight}

    def checkpoint_objects(self) -> dict:
        return {"optimizer": self.optimizer}

    def batches(self, start_step: int):
        generator = torch.Generator().manual_seed(start_step)
        while True:
            yield torch.randn(8, 1, generator=generator)

    def loss(self, batch: torch.Tensor):
        if self.state.step + 1 == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only notes it
        loss = (self.weight(batch) - 2 * batch).pow(2).mean()
        return (loss * float("nan") if self.state.step + 1 == self.nan_at else loss), {}

    def update(self, batch: torch.Tensor, loss: torch.Tensor) -> dict[str, float]:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {}

    def learning_rate(self) -> float:
        return 0.1


def job_in(folder: Path, context: DistContext) -> TrainingJob:
    return TrainingJob("fit", folder / "checkpoints", RunLogger(folder, console=False, tensorboard=False),
                       context=context)


def test_one_all_reduce_per_step_carries_the_divergence_check_and_the_notice(tmp_path):
    context = CountingContext()
    train(LineFit(), TrainingStageConfig(steps=6, checkpoint_every=100), job_in(tmp_path, context))
    assert context.reduced == [1] + [2] * 6  # the resume's agreement on a checkpoint, then one per step


def test_a_signal_during_a_steps_loss_stops_after_that_step_with_its_checkpoint(tmp_path):
    context, task = CountingContext(), LineFit(signal_at=4)
    with pytest.raises(PreemptedError) as stopped:
        train(task, TrainingStageConfig(steps=10, checkpoint_every=100), job_in(tmp_path, context))
    assert stopped.value.signal == signal.SIGTERM and "after step 4/10" in str(stopped.value)
    assert task.state.step == 4 and context.reduced == [1] + [2] * 4
    assert (tmp_path / "checkpoints" / "step_00000004").is_dir()


def test_a_nan_loss_stops_before_the_update(tmp_path):
    task = LineFit(nan_at=3)
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 3"):
        train(task, TrainingStageConfig(steps=10, checkpoint_every=100), job_in(tmp_path, CountingContext()))
    assert task.state.step == 2
