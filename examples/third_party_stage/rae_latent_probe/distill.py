"""Stage ``encoder_distill``: a training stage on the engine's shared loop, in one file.

It distils the RAE's encoder into a small convolutional student that maps images straight to the normalised
latents (MSE against the frozen encoder's latents) and writes ``checkpoints/student.safetensors``. The loop
(:func:`rae_framework.engine.train`) gives it resume, DDP, checkpoints, logging, the progress line and the
divergence check; the stage supplies its state, its batches, its loss and its update (a
:class:`~rae_framework.stage.TrainingTask`). torch is imported inside the task only, so that ``rae validate``
and ``rae list`` stay torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from rae_framework.config import OptimizerConfig
from rae_framework.stage import Stage, StageSpec, TrainingStageConfig, TrainingTask


class DistillConfig(TrainingStageConfig):
    """Settings under ``stages.encoder_distill`` (steps, checkpoints and logging come from the base)."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=260, summary="distil the encoder into a small convolutional student (MSE on normalised latents)",
        roles=("encoder", "decoder"), sections=("autoencoder", "data"), reads=("latent_stats",),
        outputs={"student": "checkpoints/student.safetensors"}, resumable=True)

    batch_size: int = Field(32, gt=0, description="Global batch size.")
    width: int = Field(32, gt=0, description="Channels of the student's hidden layer.")
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=3e-3),
                                       description="The student's optimiser.")


@dataclass
class StudentState:
    """What the stage trains and checkpoints."""

    student: Any  # nn.Module: images (B, 3, H, W) -> latents (B, C, h, w)
    optimizer: Any
    scheduler: Any
    step: int = 0


def build_student(latent_shape, width: int):
    """A conv layer, a pooling to the latent grid and a 1x1 projection to the latent channels."""
    from torch import nn

    channels, height, width_out = latent_shape
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d((height, width_out)),
                         nn.Conv2d(width, channels, 1))


class DistillTask(TrainingTask):
    """The student, the frozen encoder's latents as targets, and the training set in the run's order."""

    def __init__(self, run, config: DistillConfig, job) -> None:
        from rae_framework.data.datasets import BatchPlan, build_dataset
        from rae_framework.engine import build_optimizer, build_rae, build_scheduler, encode_fn

        self.config, self.job = config, job
        self.dataset = build_dataset(run.assembly.data, "train")
        self.plan = BatchPlan(len(self.dataset), job.seed)  # the run's data order, no flips
        self.target = encode_fn(build_rae(run), job.context.device)
        student = build_student(run.assembly.latent_shape, config.width).to(job.context.device)
        optimizer = build_optimizer(student.parameters(), config.optimizer)
        self.state = StudentState(student, optimizer, build_scheduler(optimizer, config.optimizer, config.steps))
        self.trained = student

    def checkpoint_modules(self) -> dict[str, Any]:
        return {"student": self.state.student}

    def checkpoint_objects(self) -> dict[str, Any]:
        return {"optimizer": self.state.optimizer, "scheduler": self.state.scheduler}

    def prepare(self, job) -> None:
        from rae_framework.engine import wrap_model

        self.trained = wrap_model(self.state.student, job.context).train()

    def batches(self, start_step: int):
        import torch

        context = self.job.context
        for step in range(start_step, self.config.steps):
            items = self.plan.batch(step, self.config.batch_size, context.rank, context.world_size)
            yield torch.stack([self.dataset[item][0] for item in items]).to(context.device)  # (B, 3, H, W)

    def loss(self, batch):
        target = self.target(batch)  # (B, C, h, w), no grad
        return ((self.trained(batch) - target) ** 2).mean(), {}

    def update(self, batch, loss) -> dict[str, float]:
        from rae_framework.engine import clip_gradients

        self.state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.state.student.parameters(), self.config.optimizer.grad_clip)
        self.state.optimizer.step()
        self.state.scheduler.step()
        return {"grad_norm": grad_norm}

    def learning_rate(self) -> float:
        return self.state.scheduler.get_last_lr()[0]


class EncoderDistill(Stage):
    """``encoder_distill`` -> ``checkpoints/student.safetensors``."""

    Config = DistillConfig

    def run(self, run) -> None:
        """Train the student with the engine's loop; rank 0 writes its final weights."""
        from rae_framework.engine import TrainingJob, module_tensors, save_final_weights, train

        job = TrainingJob.of(run, "encoder_distill")
        task = DistillTask(run, self.config, job)
        train(task, self.config, job)
        save_final_weights(run, self.config.spec, {"student": module_tensors(task.state.student)})
