"""Decoder training (stage 1) against a test-side transcription of the reference's training loop.

The transcription follows src/train_stage1.py:L371-450 (bytetriper/RAE a4d18c4) line by line in the
reference's [-1, 1] image space: generator step with the discriminator in eval mode, L1 + LPIPS, the
generator loss -mean(D(aug(recon))) (src/disc/gan_loss.py:L23) scaled by the adaptive weight
(src/train_stage1.py:L68), clipping of the decoder only, AdamW, EMA over the parameters
(src/utils/train_utils.py:L68), then the discriminator step on a fresh eval-mode reconstruction, clamped and
quantised to 8 bits, fakes augmented before reals, hinge loss (src/disc/gan_loss.py:L7), no clipping. Both
sides start from the same weights and see the same batches, latent noise and augmentation draws; after 3
steps with LPIPS and the GAN term active they must agree within 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rae_framework.autoencoder import RepresentationAutoencoder
from rae_framework.config import AutoencoderConfig, OptimizerConfig
from rae_framework.engine import DistContext, RowKeys
from rae_framework.session import Session
from rae_stages.configs import TrainDecoderStage
from rae_stages.train_decoder import STREAM_STAGE1, Stage1Parts, build_stage1_state, decoder_loss, decoder_update

STEPS, BATCH, SEED = 3, 4, 0
LR, BETAS, CLIP, EMA_DECAY, DISC_WEIGHT, MAX_D_WEIGHT = 1e-3, (0.9, 0.95), 1.0, 0.9, 0.75, 1e4


@pytest.fixture(scope="module")
def parts():
    """Tiny RAE (MAE encoder, ViT decoder), DINO discriminator, LPIPS, hinge loss, DiffAugment."""
    session = Session()
    torch.manual_seed(0)
    encoder = session.build("encoder", "mae", preset="mae-tiny")
    channels, grid, _ = encoder.latent_shape
    decoder = session.build("decoder", "vit", {"token_dim": channels, "num_patches": grid * grid}, preset="vit-tiny")
    rae = RepresentationAutoencoder(encoder, decoder, AutoencoderConfig(noise_tau=0.8))
    with torch.no_grad():  # images at the decoder's output size, as the reference trains (input == output)
        size = rae.eval().decode(rae.encode(torch.rand(1, 3, encoder.input_size, encoder.input_size))).shape[-1]
    return {"rae": rae, "size": size, "discriminator": session.build("discriminator", "dino", preset="dino-tiny"),
            "perceptual": session.build("perceptual", "lpips", preset="lpips-tiny"),
            "gan_loss": session.build("gan_loss", "hinge"),
            "augment": session.build("augmentation", "diffaug", {"policy": "color,translation", "prob": 1.0})}


def batches(size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return [torch.rand(BATCH, 3, size, size, generator=generator) for _ in range(STEPS)]


def run_engine(parts) -> tuple:
    rae, discriminator = copy.deepcopy(parts["rae"]), copy.deepcopy(parts["discriminator"])
    stage = TrainDecoderStage(steps=STEPS, batch_size=BATCH, ema_decay=EMA_DECAY, perceptual_weight=1.0,
                              gan_weight=DISC_WEIGHT, max_adaptive_weight=MAX_D_WEIGHT, discriminator_start_step=0,
                              gan_start_step=0, optimizer=OptimizerConfig(lr=LR, betas=BETAS, grad_clip=CLIP))
    stage_parts = Stage1Parts(discriminator=discriminator, perceptual=parts["perceptual"],
                              gan_loss=parts["gan_loss"], augment=parts["augment"])
    state = build_stage1_state(rae, stage, stage_parts, torch.device("cpu"))
    for step, images in enumerate(batches(parts["size"])):
        rows = RowKeys(SEED, step, 0, BATCH)
        loss, _ = decoder_loss(rae, rae.decoder, state, stage_parts, stage, images, rows, DistContext())
        decoder_update(rae, state, stage_parts, stage, loss, images, rows, DistContext())
        state.step += 1  # what the engine's loop does after each update
    return state.decoder, state.ema.model, state.discriminator


def run_transcription(parts) -> tuple:
    """The reference loop, transcribed (see the module docstring), on deep copies of the same modules."""
    rae, discriminator = copy.deepcopy(parts["rae"]), copy.deepcopy(parts["discriminator"])
    lpips, augment = parts["perceptual"], parts["augment"]
    decoder, ema = rae.decoder, copy.deepcopy(rae.decoder).requires_grad_(False)
    rae.encoder.requires_grad_(False)
    # fused, as the reference's build_optimizer (src/utils/optim_utils.py:L39) and our default
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=LR, betas=BETAS, weight_decay=0.0, fused=True)
    disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=LR, betas=BETAS, weight_decay=0.0, fused=True)
    disc = lambda pm1: discriminator((pm1 + 1) / 2)  # noqa: E731 - our modules take [0, 1] images
    def aug(pm1: torch.Tensor, rows: RowKeys, call: int) -> torch.Tensor:  # the engine's draws for call ``call``
        return rows.augment(augment, (pm1 + 1) / 2, STREAM_STAGE1 + 1 + call) * 2 - 1
    for step, images in enumerate(batches(parts["size"])):
        rows = RowKeys(SEED, step, 0, BATCH)  # the same draws (keyed by global row blocks) as the engine
        real_normed = images * 2.0 - 1.0
        optimizer.zero_grad(set_to_none=True)
        discriminator.eval()
        rae.train()
        rae.encoder.eval()
        with torch.no_grad():
            latents = rae.encode(images, noise=rows.draw(rae.draw_noise, STREAM_STAGE1))
        recon = rae.decode(latents)
        recon_normed = recon * 2.0 - 1.0
        rec_loss = (recon - images).abs().mean()
        lpips_loss = lpips((real_normed + 1) / 2, (recon_normed + 1) / 2).mean()
        recon_total = rec_loss + 1.0 * lpips_loss
        gan_loss = -disc(aug(recon_normed, rows, 0)).float().mean()
        last = decoder.last_layer_weight
        rec_grad = torch.autograd.grad(recon_total, last, retain_graph=True)[0]
        gan_grad = torch.autograd.grad(gan_loss, last, retain_graph=True)[0]
        weight = torch.clamp(rec_grad.norm() / (gan_grad.norm() + 1e-6), 0.0, MAX_D_WEIGHT).detach()
        (recon_total + DISC_WEIGHT * weight * gan_loss).backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), CLIP)
        optimizer.step()
        with torch.no_grad():
            for ema_param, param in zip(ema.parameters(), decoder.parameters()):
                ema_param.mul_(EMA_DECAY).add_(param.data, alpha=1 - EMA_DECAY)
        rae.eval()
        discriminator.train()
        disc_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            recon_disc_normed = rae.decode(rae.encode(images)) * 2.0 - 1.0
        fake = torch.round((recon_disc_normed.clamp(-1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0
        fake_input, real_input = aug(fake, rows, 1), aug(real_normed, rows, 2)
        logits_fake, logits_real = disc(fake_input).float(), disc(real_input).float()
        d_loss = 0.5 * (torch.relu(1.0 - logits_real).mean() + torch.relu(1.0 + logits_fake).mean())
        d_loss.backward()
        disc_optimizer.step()
        discriminator.eval()
    return decoder, ema, discriminator


@pytest.mark.slow
def test_three_steps_with_lpips_and_gan_match_the_reference_loop(parts):
    ours, theirs = run_engine(parts), run_transcription(parts)
    for name, mine, reference in zip(("decoder", "ema", "discriminator"), ours, theirs):
        mine_state, reference_state = mine.state_dict(), reference.state_dict()
        assert mine_state.keys() == reference_state.keys()
        for key in mine_state:
            torch.testing.assert_close(mine_state[key].float(), reference_state[key].float(), rtol=0, atol=1e-5,
                                       msg=f"{name}.{key}")
    moved = max((a - b).abs().max() for a, b in zip(parts["rae"].decoder.state_dict().values(),
                                                    ours[0].state_dict().values()))
    assert moved > 1e-4  # the three steps really trained the decoder
