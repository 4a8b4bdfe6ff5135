"""Stage-2 loop: training moves the loss, accumulation equals the large batch, EMA, NaN stop, label drops."""

from __future__ import annotations

import math

import pytest
import torch

from rae_framework.config import OptimizerConfig
from rae_stages.configs import TrainDenoiserStage
from rae_framework.engine.logging import RunLogger
from rae_framework.engine import TrainingJob, draw_step, step_generator
from rae_stages.train_denoiser import train_denoiser
from rae_framework.errors import ConfigError, TrainingDivergedError

from doubles import DenoiserDoubleConfig, LinearSchedule, TinyDenoiser


class ToyLatents:
    """64 class-dependent latents (4, 4, 4): an easy target."""

    def __init__(self, count: int = 64) -> None:
        generator = torch.Generator().manual_seed(0)
        self.labels = torch.arange(count) % 10
        self.latents = torch.randn(count, 4, 4, 4, generator=generator) * 0.1 + self.labels.view(-1, 1, 1, 1) / 5
        self.num_samples = count

    def batch(self, items):
        index = torch.tensor([i for i, _ in items])
        flips = torch.tensor([f for _, f in items]).view(-1, 1, 1, 1)
        x = self.latents[index]
        return torch.where(flips, x.flip(-1), x), self.labels[index]


def make_stage(**overrides) -> TrainDenoiserStage:
    settings = dict(steps=6, batch_size=8, checkpoint_every=3, keep_last=2, ema_decay=0.9, log_every=1,
                    optimizer=OptimizerConfig(lr=1e-2, warmup_steps=2, decay="cosine"))
    return TrainDenoiserStage(**{**settings, **overrides})


def run(tmp_path, stage, seed=0, on_step=None):
    torch.manual_seed(123)
    denoiser = TinyDenoiser(DenoiserDoubleConfig())
    logger = RunLogger(tmp_path / "run", tensorboard=False)
    try:
        job = TrainingJob("train_denoiser", tmp_path / "ckpt", logger, seed=seed, on_step=on_step)
        return train_denoiser(denoiser, LinearSchedule(), ToyLatents(), stage, job)
    finally:
        logger.close()


def weights(module):
    return {key: value.clone() for key, value in module.state_dict().items()}


def test_training_lowers_loss_and_writes_checkpoints(tmp_path):
    losses = []
    run(tmp_path, make_stage(steps=20, checkpoint_every=5), on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == 20
    assert sum(losses[-5:]) < sum(losses[:5])
    steps = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert steps == ["step_00000015", "step_00000020"]  # keep_last = 2
    assert (tmp_path / "run" / "metrics.csv").read_text().count("train_denoiser") == 3 * 20


def test_grad_accumulation_equals_large_batch(tmp_path):
    big = run(tmp_path / "a", make_stage(grad_accumulation=1))
    accumulated = run(tmp_path / "b", make_stage(grad_accumulation=4))
    for key, value in weights(big.model).items():
        torch.testing.assert_close(weights(accumulated.model)[key], value, rtol=1e-5, atol=1e-6)


def test_ema_follows_the_documented_update(tmp_path):
    state = run(tmp_path, make_stage(steps=1, ema_decay=0.5))
    torch.manual_seed(123)
    initial = weights(TinyDenoiser(DenoiserDoubleConfig()))
    for key, value in weights(state.model).items():
        torch.testing.assert_close(weights(state.ema.model)[key], 0.5 * initial[key] + 0.5 * value)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    stage = make_stage(steps=5, checkpoint_every=2)
    calls = []

    def poison(step, loss):
        calls.append(step)
        if step == 3:
            with torch.no_grad():
                next(state_holder[0].parameters()).fill_(float("nan"))

    state_holder = []
    torch.manual_seed(123)
    denoiser = TinyDenoiser(DenoiserDoubleConfig())
    state_holder.append(denoiser)
    logger = RunLogger(tmp_path / "run", tensorboard=False)
    with pytest.raises(TrainingDivergedError, match="step 4.*step_00000002"):
        train_denoiser(denoiser, LinearSchedule(), ToyLatents(), stage,
                       TrainingJob("train_denoiser", tmp_path / "ckpt", logger, on_step=poison))
    logger.close()
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["step_00000002"]


def test_loss_at_the_step_draws_equals_the_schedule_training_loss():
    torch.manual_seed(0)
    model, schedule = TinyDenoiser(DenoiserDoubleConfig(class_dropout_prob=0.0)).eval(), LinearSchedule()
    x, y = torch.randn(5, 4, 4, 4), torch.arange(5)
    expected = schedule.training_loss(model, x, y, generator=torch.Generator().manual_seed(7))
    draws = draw_step(schedule, torch.Generator().manual_seed(7), 5, (4, 4, 4), 0.0)
    torch.testing.assert_close(schedule.loss_at(model, x, y, draws.noise, draws.t), expected)


def test_label_drops_are_seeded_and_need_a_null_row(tmp_path):
    first = draw_step(LinearSchedule(), step_generator(0, 2, 5), 1000, (1,), 0.1).drop
    second = draw_step(LinearSchedule(), step_generator(0, 2, 5), 1000, (1,), 0.1).drop
    assert torch.equal(first, second) and math.isclose(first.float().mean().item(), 0.1, abs_tol=0.03)
    with pytest.raises(ConfigError, match="class_dropout_prob"):
        denoiser = TinyDenoiser(DenoiserDoubleConfig(class_dropout_prob=0.0))
        logger = RunLogger(tmp_path, enabled=False)
        train_denoiser(denoiser, LinearSchedule(), ToyLatents(), make_stage(),
                       TrainingJob("train_denoiser", tmp_path / "c", logger))


def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path):
    bf16_losses, fp32_losses = [], []
    state = run(tmp_path, make_stage(steps=3, mixed_precision="bf16"), on_step=lambda s, loss: bf16_losses.append(loss))
    run(tmp_path / "fp32", make_stage(steps=1), on_step=lambda s, loss: fp32_losses.append(loss))
    assert len(bf16_losses) == 3 and all(math.isfinite(loss) for loss in bf16_losses)
    assert bf16_losses[0] != fp32_losses[0] and math.isclose(bf16_losses[0], fp32_losses[0], rel_tol=0.05)
    assert all(param.dtype == torch.float32 for param in state.model.parameters())


def test_save_at_steps_are_checkpointed_and_never_pruned(tmp_path):
    run(tmp_path, make_stage(steps=8, checkpoint_every=4, keep_last=1, save_at=[3]))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_00000003", "step_00000008"]
    assert (tmp_path / "ckpt" / "step_00000003" / "ema.safetensors").is_file()  # e.g. an autoguidance guide
    with pytest.raises(ValueError, match="outside 1..steps"):
        make_stage(steps=8, save_at=[9])
