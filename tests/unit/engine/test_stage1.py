"""Stage-1 loop with the test doubles: decoder-only training, GAN schedule, reconstructions, held-out metrics."""

from __future__ import annotations

import csv

import pytest
import torch

from rae_framework.data.datasets import build_dataset
from rae_framework.config import OptimizerConfig
from rae_framework.data.config import DataConfig
from rae_stages.configs import TrainDecoderStage
from rae_framework.engine import TrainingJob
from rae_framework.engine.logging import RunLogger
from rae_stages.train_decoder import Stage1Parts, train_decoder
from rae_framework.errors import TrainingDivergedError

from rae_gan.configs import GANLossConfig
from rae_gan.losses import HingeLoss

from doubles import Discriminator, tiny_rae


class L1Metric:
    """A mergeable mean-absolute-error metric (the Metric protocol the engine uses)."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, generated=None, reference=None):
        self.total += float((generated - reference).abs().sum())
        self.count += generated.numel()

    def compute(self):
        return {"mae": self.total / self.count}


def run(tmp_path, steps, **overrides):
    torch.manual_seed(0)
    rae = tiny_rae()
    encoder_before = {k: v.clone() for k, v in rae.encoder.state_dict().items()}
    stage = TrainDecoderStage(**{**dict(steps=steps, batch_size=8, checkpoint_every=100, sample_every=3,
                                        log_every=1, ema_decay=0.5, perceptual_weight=0.0,
                                        optimizer=OptimizerConfig(lr=3e-3)), **overrides})
    disc = Discriminator()
    parts = Stage1Parts(discriminator=disc, gan_loss=HingeLoss(GANLossConfig()), metrics={"mae": L1Metric()})
    dataset = build_dataset(DataConfig(source="digits", image_size=16), "train")
    holdout = torch.stack([dataset[i][0] for i in range(4)])
    logger = RunLogger(tmp_path, tensorboard=False)
    state = train_decoder(rae, dataset, holdout, stage, parts,
                          TrainingJob("train_decoder", tmp_path / "ckpt", logger, out_dir=tmp_path))
    logger.close()
    return rae, state, encoder_before


def logged(tmp_path, name):
    with (tmp_path / "metrics.csv").open() as handle:
        return [float(row["value"]) for row in csv.DictReader(handle) if row["name"] == name]


def test_decoder_learns_encoder_stays_frozen(tmp_path):
    rae, state, encoder_before = run(tmp_path, 12, discriminator_start_step=100, gan_start_step=100)
    for key, value in rae.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key])
    l1 = logged(tmp_path, "l1")
    assert len(l1) == 12 and sum(l1[-3:]) < sum(l1[:3])
    assert not logged(tmp_path, "disc_loss") and not logged(tmp_path, "gan")  # schedule not reached
    assert sorted(p.name for p in (tmp_path / "reconstructions").iterdir())[-1] == "step_00000012.png"
    assert len(logged(tmp_path, "holdout_mae")) == 4  # steps 3, 6, 9, 12
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["step_00000012"]


def test_gan_schedule_starts_discriminator_then_gan_term(tmp_path):
    run(tmp_path, 4, discriminator_start_step=1, gan_start_step=2)
    with (tmp_path / "metrics.csv").open() as handle:
        steps = {(row["name"], int(row["step"])) for row in csv.DictReader(handle)}
    # step s logged after update s; the discriminator trains from the 2nd update, the GAN term from the 3rd.
    assert {step for name, step in steps if name == "disc_loss"} == {2, 3, 4}
    assert {step for name, step in steps if name == "gan"} == {3, 4}
    assert all(weight >= 0 for weight in logged(tmp_path, "adaptive_weight"))


class PoisonedPerceptual(torch.nn.Module):
    """A perceptual distance that turns NaN from its ``start``-th call on."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.calls, self.start = 0, start

    def forward(self, images, targets):
        self.calls += 1
        value = float("nan") if self.calls >= self.start else 0.0
        return (images - targets).abs().mean(dim=(1, 2, 3)) * 0 + value


def test_nan_loss_stops_stage1_with_the_last_good_checkpoint(tmp_path):
    stage = TrainDecoderStage(steps=6, batch_size=4, checkpoint_every=2, log_every=1, sample_every=100,
                              perceptual_weight=1.0)
    parts = Stage1Parts(perceptual=PoisonedPerceptual(start=4))
    dataset = build_dataset(DataConfig(source="digits", image_size=16), "train")
    logger = RunLogger(tmp_path, tensorboard=False)
    with pytest.raises(TrainingDivergedError, match="step 4.*step_00000002"):
        train_decoder(tiny_rae(), dataset, torch.zeros(0, 3, 16, 16), stage, parts,
                      TrainingJob("train_decoder", tmp_path / "c", logger, out_dir=tmp_path))
    logger.close()
    assert [path.name for path in (tmp_path / "c").iterdir()] == ["step_00000002"]


def test_the_gan_loss_and_diffaug_policy_are_built_by_name_through_the_session():
    from types import SimpleNamespace

    from rae_framework.session import Session
    from rae_stages.train_decoder import stage1_parts

    roles = {"discriminator": object(), "perceptual": None}
    run = SimpleNamespace(optional=roles.get, session=Session())
    parts = stage1_parts(run, TrainDecoderStage(diffaug="color,translation", gan_loss="vanilla"))
    assert parts.augment.config.policy == "color,translation"
    assert type(parts.gan_loss).__name__ == "VanillaLoss" and set(parts.metrics) == {"psnr", "ssim"}
    assert stage1_parts(run, TrainDecoderStage(diffaug="")).augment is None  # '' = off
    no_gan = stage1_parts(SimpleNamespace(optional={}.get, session=run.session), TrainDecoderStage())
    assert no_gan.gan_loss is None and no_gan.augment is None
