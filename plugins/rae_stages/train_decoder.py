"""Stage ``train_decoder`` (stage 1): train the RAE decoder (frozen encoder) with L1 + perceptual + adaptive GAN.

The encoder runs in eval mode without gradients; the RAE's train mode adds the noise augmentation to the
latents. The discriminator (optional) has its own AdamW; its updates start at ``discriminator_start_step``
and the GAN term enters the decoder loss at ``gan_start_step``. The adversarial loss (kind ``gan_loss``) and
the discriminator's augmentation (kind ``augmentation``, ``diffaug``) are registered components built by
name through the run's session: this stage imports no other plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from rae_framework.data.datasets import BatchPlan, PlannedBatches, build_dataset
from rae_framework.data.loading import LoaderSettings, StackImages, planned_loader, to_device
from rae_framework.engine import (DistContext, EMA, RowKeys, RunState, TrainingJob, TrainingTask, build_metric,
                                  build_optimizer, build_rae, build_scheduler, clip_gradients, holdout_images,
                                  match_size, module_tensors, reconstruct, reduce_metric, save_final_weights,
                                  to_uint8, train, wrap_model)
from rae_framework.interfaces import Stage
from rae_stages.configs import TrainDecoderStage

STREAM_STAGE1 = 1000  # latent noise; DiffAugment calls use STREAM_STAGE1 + 1 + call (per global row block)
ADAPTIVE_WEIGHT_EPS = 1e-6


@dataclass
class Stage1Parts:
    """The optional pieces of the stage-1 objective."""

    discriminator: nn.Module | None = None
    perceptual: nn.Module | None = None
    gan_loss: object | None = None  # kind 'gan_loss': discriminator_loss(real, fake), generator_loss(fake)
    augment: Callable[..., torch.Tensor] | None = None  # DiffAugment: augment(images, generator=...)
    metrics: dict[str, object] = field(default_factory=dict)  # name -> Metric (held-out PSNR/SSIM)


@dataclass
class Stage1State:
    """Trainable state of stage 1 (decoder, its EMA, optimisers; discriminator when present)."""

    decoder: nn.Module  # the unwrapped decoder (``rae.decoder``)
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    discriminator: nn.Module | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    disc_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    step: int = 0


def build_stage1_state(rae: nn.Module, stage: TrainDecoderStage, parts: Stage1Parts,
                       device: torch.device) -> Stage1State:
    """Decoder + EMA + AdamW/schedule, and the discriminator's own AdamW/schedule."""
    rae.to(device)
    rae.encoder.requires_grad_(False)
    optimizer = build_optimizer(rae.decoder.parameters(), stage.optimizer)
    state = Stage1State(rae.decoder, EMA(rae.decoder, stage.ema_decay), optimizer,
                        build_scheduler(optimizer, stage.optimizer, stage.steps))
    if parts.discriminator is not None:
        state.discriminator = parts.discriminator.to(device)
        state.disc_optimizer = build_optimizer(state.discriminator.parameters(), stage.optimizer)
        state.disc_scheduler = build_scheduler(state.disc_optimizer, stage.optimizer, stage.steps)
    if parts.perceptual is not None:
        parts.perceptual.to(device).eval().requires_grad_(False)
    return state


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor, stage: TrainDecoderStage,
                        perceptual: nn.Module | None) -> tuple[torch.Tensor, dict[str, float]]:
    """``l1_weight * L1 + perceptual_weight * LPIPS`` (scalar) and its parts for logging."""
    l1 = (recon - images).abs().mean()
    loss, logged = stage.l1_weight * l1, {"l1": float(l1.detach())}
    if perceptual is not None and stage.perceptual_weight > 0:
        distance = perceptual(recon, images).mean()
        loss, logged["perceptual"] = loss + stage.perceptual_weight * distance, float(distance.detach())
    return loss, logged


def _augmented(parts: Stage1Parts, images: torch.Tensor, rows: RowKeys, call: int) -> torch.Tensor:
    """DiffAugment call ``call`` of the step (0: fake for G, 1: fake for D, 2: real for D), keyed by row blocks."""
    return rows.augment(parts.augment, images, STREAM_STAGE1 + 1 + call) if parts.augment is not None else images


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float, context: DistContext | None = None) -> torch.Tensor:
    """``|grad L_rec| / (|grad L_gan| + 1e-6)`` at the decoder's ``last_layer``, clamped to ``[0, max_weight]``,
    detached (reference: src/train_stage1.py:L68 ``calculate_adaptive_weight``); both graphs are kept. The
    gradients are the *global* batch's (each rank's averaged over ``context``), so the weight does not depend
    on the world size; the reference uses each rank's own."""
    context = context or DistContext()
    grads = [torch.autograd.grad(loss, last_layer, retain_graph=True)[0] for loss in (rec_loss, gan_loss)]
    rec_grad, gan_grad = (context.all_reduce_sum(grad.clone()) / context.world_size for grad in grads)
    return (rec_grad.norm() / (gan_grad.norm() + ADAPTIVE_WEIGHT_EPS)).clamp(0.0, max_weight).detach()


def generator_loss(state: Stage1State, parts: Stage1Parts, stage: TrainDecoderStage, recon: torch.Tensor,
                   images: torch.Tensor, rows: RowKeys,
                   context: DistContext) -> tuple[torch.Tensor, dict[str, float]]:
    """The decoder's loss: reconstruction, plus the adaptive-weighted GAN term once it is active."""
    loss, logged = reconstruction_loss(recon, images, stage, parts.perceptual)
    if state.discriminator is None or stage.gan_weight == 0 or state.step < stage.gan_start_step:
        return loss, logged
    state.discriminator.eval()  # the generator step sees the discriminator in eval mode (train_stage1.py:L376)
    gan = parts.gan_loss.generator_loss(state.discriminator(_augmented(parts, recon, rows, 0)).float())
    weight = adaptive_weight(loss, gan, state.decoder.last_layer_weight, stage.max_adaptive_weight, context)
    logged.update(gan=float(gan.detach()), adaptive_weight=float(weight))
    return loss + stage.gan_weight * weight * gan, logged


def quantize_fake(images: torch.Tensor) -> torch.Tensor:
    """Reconstructions as the discriminator sees them: clamped to [0, 1] and rounded to 8-bit levels
    (train_stage1.py:L429-431 does the same in [-1, 1]: ``round((x + 1) * 127.5) / 127.5 - 1``)."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0


def discriminator_step(rae: nn.Module, state: Stage1State, parts: Stage1Parts, stage: TrainDecoderStage,
                       images: torch.Tensor, rows: RowKeys, context: DistContext) -> dict[str, float]:
    """One discriminator update, as the reference's (src/train_stage1.py:L417-450): its fakes are a fresh,
    no-grad, eval-mode (clean latents) reconstruction by the *updated* decoder, clamped and quantised to 8
    bits; fakes, then reals, are augmented; no gradient clipping. Unlike the reference, whose discriminator
    step uses the unwrapped module, gradients are averaged over ranks, so every rank keeps the same weights."""
    if state.discriminator is None or state.step < stage.discriminator_start_step:
        return {}
    fake = quantize_fake(reconstruct(rae, state.decoder, images))  # (B, 3, H', W')
    real = match_size(images, fake.shape[-2:])
    state.discriminator.train()
    state.disc_optimizer.zero_grad(set_to_none=True)
    fake_logits = state.discriminator(_augmented(parts, fake, rows, 1)).float()
    real_logits = state.discriminator(_augmented(parts, real, rows, 2)).float()
    loss = parts.gan_loss.discriminator_loss(real_logits, fake_logits)
    loss.backward()
    context.average_gradients(state.discriminator.parameters())  # two forwards per step: no DDP wrapper
    state.disc_optimizer.step()
    state.disc_scheduler.step()
    state.discriminator.eval()
    return {"disc_loss": float(loss.detach())}


def decoder_loss(rae: nn.Module, decoder: nn.Module, state: Stage1State, parts: Stage1Parts,
                 stage: TrainDecoderStage, images: torch.Tensor, rows: RowKeys,
                 context: DistContext) -> tuple[torch.Tensor, dict[str, float]]:
    """Encode (no grad, noise-augmented in train mode), decode with ``decoder`` (the trained decoder, wrapped
    for DDP when distributed): the decoder's loss, as the reference's step begins (src/train_stage1.py:L371-405).

    ``rows`` (this rank's global rows of the step) keys the latent noise and DiffAugment per row block, so
    the step does not depend on the world size.
    """
    rae.train()
    rae.encoder.eval()
    with torch.no_grad():
        latents = rae.encode(images, noise=rows.draw(rae.draw_noise, STREAM_STAGE1))  # (B, C, h, w)
    recon = rae.decode(latents, decoder)  # (B, 3, H', W')
    return generator_loss(state, parts, stage, recon, match_size(images, recon.shape[-2:]), rows, context)


def decoder_update(rae: nn.Module, state: Stage1State, parts: Stage1Parts, stage: TrainDecoderStage,
                   loss: torch.Tensor, images: torch.Tensor, rows: RowKeys, context: DistContext) -> dict[str, float]:
    """One decoder update, EMA, then one discriminator update (the reference's order,
    src/train_stage1.py:L405-450)."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    logged = {"grad_norm": clip_gradients(state.decoder.parameters(), stage.optimizer.grad_clip)}
    state.optimizer.step()
    state.scheduler.step()
    state.ema.update(state.decoder)
    return {**logged, **discriminator_step(rae, state, parts, stage, images, rows, context)}


def evaluate_holdout(rae: nn.Module, decoder: nn.Module, images: torch.Tensor, metrics: dict[str, object],
                     batch_size: int, context: DistContext) -> dict[str, float]:
    """Held-out PSNR/SSIM (whatever metrics are given) of this rank's shard, reduced over ranks."""
    shard = images[context.rank::context.world_size]
    results: dict[str, float] = {}
    for metric in metrics.values():
        metric.reset()
        for start in range(0, shard.shape[0], batch_size):
            batch = shard[start:start + batch_size].to(context.device)
            recon = reconstruct(rae, decoder, batch)
            metric.update(generated=recon, reference=match_size(batch, recon.shape[-2:]))
        results.update(reduce_metric(metric, context).compute())
    return results


def save_reconstructions(rae: nn.Module, decoder: nn.Module, images: torch.Tensor, path: Path) -> None:
    """A PNG with originals (top row) over EMA reconstructions (bottom row)."""
    recon = reconstruct(rae, decoder, images)
    rows = [to_uint8(match_size(images, recon.shape[-2:]).cpu()), to_uint8(recon)]  # 2 x (B, H, W, 3)
    strip = np.concatenate([np.concatenate(list(row), axis=1) for row in rows])  # (2H, B*W, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)


class DecoderTraining(TrainingTask):
    """Stage 1 for the shared loop: the decoder of ``rae`` on ``dataset``; ``holdout`` ``(M, 3, H, W)`` feeds
    the periodic reconstructions and held-out metrics."""

    def __init__(self, rae: nn.Module, dataset, holdout: torch.Tensor, stage: TrainDecoderStage,
                 parts: Stage1Parts, job: TrainingJob, loader: LoaderSettings, flips: bool) -> None:
        self.rae, self.dataset, self.holdout, self.stage, self.parts, self.job = rae, dataset, holdout, stage, parts, job
        self.loader, self.share = loader, job.share(stage.batch_size)
        self.plan = BatchPlan(len(dataset), job.seed, flips, crop=dataset.random_crop)  # crops: data.train_transform
        self.state = build_stage1_state(rae, stage, parts, job.context.device)
        self.train_decoder: nn.Module = self.state.decoder

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        modules = {"decoder": self.state.decoder, "ema": self.state.ema.model}
        return {**modules, "discriminator": self.state.discriminator} if self.parts.discriminator is not None else modules

    def checkpoint_objects(self) -> dict[str, object]:
        named = {"optimizer": self.state.optimizer, "scheduler": self.state.scheduler}
        if self.parts.discriminator is not None:
            named.update(disc_optimizer=self.state.disc_optimizer, disc_scheduler=self.state.disc_scheduler)
        return named

    def prepare(self, job: TrainingJob) -> None:
        self.train_decoder = wrap_model(self.state.decoder, job.context).train()

    def batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, RowKeys]]:
        context = self.job.context
        sampler = PlannedBatches(self.plan, self.stage.batch_size, start_step, self.stage.steps, context.rank,
                                 context.world_size)
        loader = planned_loader(StackImages(self.dataset), sampler, self.loader)
        for step, (_, images, _) in enumerate(loader, start=start_step):
            yield to_device(images, context.device), RowKeys(self.job.seed, step, self.share.start, self.share.stop,
                                                             context.device)

    def loss(self, batch: tuple[torch.Tensor, RowKeys]) -> tuple[torch.Tensor, dict[str, float]]:
        images, rows = batch
        return decoder_loss(self.rae, self.train_decoder, self.state, self.parts, self.stage, images, rows,
                            self.job.context)

    def update(self, batch: tuple[torch.Tensor, RowKeys], loss: torch.Tensor) -> dict[str, float]:
        images, rows = batch
        return decoder_update(self.rae, self.state, self.parts, self.stage, loss, images, rows, self.job.context)

    def learning_rate(self) -> float:
        return self.state.scheduler.get_last_lr()[0]

    def after_step(self, job: TrainingJob, last: bool) -> None:
        """Every ``sample_every`` steps and at the end: reconstructions PNG and held-out metrics (EMA decoder)."""
        step, ema = self.state.step, self.state.ema.model
        if not (step % self.stage.sample_every == 0 or last) or self.holdout.shape[0] == 0:
            return
        if job.context.is_main and job.out_dir is not None:
            picture = Path(job.out_dir) / "reconstructions" / f"step_{step:08d}.png"
            save_reconstructions(self.rae, ema, self.holdout[:8].to(job.context.device), picture)
            job.logger.image_file(f"{job.name}/reconstructions", step, picture)
        if self.parts.metrics:
            results = evaluate_holdout(self.rae, ema, self.holdout, self.parts.metrics, self.stage.batch_size,
                                       job.context)
            job.logger.scalars(job.name, step, {f"holdout_{name}": value for name, value in results.items()})


def train_decoder(rae: nn.Module, dataset, holdout: torch.Tensor, stage: TrainDecoderStage, parts: Stage1Parts,
                  job: TrainingJob, *, flips: bool = False, num_workers: int = 0) -> Stage1State:
    """Train ``rae.decoder`` for ``stage.steps`` steps; returns the final state (EMA included)."""
    task = DecoderTraining(rae, dataset, holdout, stage, parts, job, LoaderSettings(num_workers), flips)
    train(task, stage, job)
    return task.state


def stage1_parts(run: RunState, stage: TrainDecoderStage) -> Stage1Parts:
    """Discriminator, its loss and augmentation, perceptual loss and held-out metrics, where configured."""
    parts = Stage1Parts(discriminator=run.optional("discriminator"), perceptual=run.optional("perceptual"))
    if parts.discriminator is not None:
        parts.gan_loss = run.session.build("gan_loss", stage.gan_loss)
        if stage.diffaug:
            parts.augment = run.session.build("augmentation", "diffaug", {"policy": stage.diffaug})
    registry = run.session.registry
    available = registry.names("metric") if "metric" in registry.kinds else []
    parts.metrics = {name: build_metric(run.session, name) for name in stage.holdout_metric_names(available)}
    return parts


class TrainDecoder(Stage):
    """``train_decoder``: stage 1 -> ``checkpoints/decoder.safetensors`` and ``decoder_ema.safetensors``."""

    Config = TrainDecoderStage

    def run(self, run: RunState) -> None:
        """Train the decoder of the assembly's RAE on the training split; save final and EMA weights."""
        stage, data = self.config, run.assembly.data
        rae = build_rae(run, trained_decoder=False, computed_statistics=False)
        result = train_decoder(rae, build_dataset(data, "train"), holdout_images(run, stage.eval_images), stage,
                               stage1_parts(run, stage), TrainingJob.of(run, "train_decoder"),
                               flips=data.horizontal_flip, num_workers=data.num_workers)
        save_final_weights(run, stage.spec, {"decoder": module_tensors(result.decoder),
                                             "decoder_ema": module_tensors(result.ema.model)})
