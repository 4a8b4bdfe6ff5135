"""World-size-invariant random draws of a training step, at O(share) cost on each rank.

A global batch of ``B`` rows is cut into fixed blocks of :data:`BLOCK_ROWS` rows. Block ``b`` of step ``s``
draws from its own generator, seeded by a hash of ``(seed, stream, step, b)`` and created on the rank's
device. A rank draws only the blocks that cover its rows ``[start, stop)``: whole blocks, sliced where its
share is not block-aligned. So 1, 2 or 8 ranks, gradient-accumulation micro-batches and a resumed run see
the same bits, while each rank's work (and, on CUDA, the device kernels) scale with its share, not with the
global batch.

Public for stage plugins: :func:`step_generator`, :func:`block_generator`, :func:`draw_rows`,
:class:`StepDraws`, :func:`draw_step`, :func:`denoiser_draws`, :func:`augment_rows`, :class:`RowKeys`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rae_framework.interfaces import NoiseSchedule

BLOCK_ROWS = 16
"""Rows per draw block. Fixed: changing it changes every run's random stream."""

BlockDraw = Callable[[int, torch.Generator], Sequence[torch.Tensor]]
"""``draw(rows, generator) -> tensors`` whose first dimension is ``rows`` (drawn in a fixed order)."""


def step_generator(seed: int, stream: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator (on ``device``) whose state is a pure function of ``(seed, stream, step)``."""
    value = ((seed * 1_000_003 + stream) * 1_000_000_007 + step) % (2**63)
    return torch.Generator(device=device).manual_seed(value)


def block_seed(seed: int, stream: int, step: int, block: int) -> int:
    """A 63-bit seed from ``(seed, stream, step, block)`` (BLAKE2b: no linear collisions between keys)."""
    key = b",".join(str(int(part)).encode() for part in (seed, stream, step, block))
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def block_generator(seed: int, stream: int, step: int, block: int,
                    device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one block of global rows, on ``device``."""
    return torch.Generator(device=device).manual_seed(block_seed(seed, stream, step, block))


def covering_blocks(start: int, stop: int, block_rows: int = BLOCK_ROWS) -> range:
    """Indices of the blocks that hold global rows ``[start, stop)``."""
    return range(start // block_rows, -(-stop // block_rows)) if stop > start else range(0)


def draw_rows(draw: BlockDraw, *, seed: int, stream: int, step: int, start: int, stop: int,
              device: torch.device | str = "cpu", block_rows: int = BLOCK_ROWS) -> tuple[torch.Tensor, ...]:
    """Rows ``[start, stop)`` of the step's global draws: each covering block drawn whole, then sliced."""
    pieces = []
    for block in covering_blocks(start, stop, block_rows):
        first = block * block_rows
        values = draw(block_rows, block_generator(seed, stream, step, block, device))
        lo, hi = max(start, first) - first, min(stop, first + block_rows) - first
        pieces.append([value[lo:hi] for value in values])
    return tuple(torch.cat(parts) for parts in zip(*pieces))


@dataclass(frozen=True)
class StepDraws:
    """The random inputs of a share of a batch: noise ``(B, C, h, w)``, times ``(B,)``, label drops ``(B,)``."""

    noise: torch.Tensor
    t: torch.Tensor
    drop: torch.Tensor

    def slice(self, start: int, stop: int, device: torch.device) -> StepDraws:
        """Rows ``[start, stop)`` on ``device``."""
        return StepDraws(*(value[start:stop].to(device) for value in (self.noise, self.t, self.drop)))


def draw_step(schedule: NoiseSchedule, generator: torch.Generator, batch_size: int,
              latent_shape: tuple[int, ...], class_dropout: float) -> StepDraws:
    """``batch_size`` rows from one generator, on its device: noise first, then times (the reference's
    order), then the label-drop mask."""
    device = generator.device
    noise = torch.randn((batch_size, *latent_shape), generator=generator, device=device)
    t = schedule.sample_time(batch_size, generator=generator, device=device).float()
    drop = torch.rand(batch_size, generator=generator, device=device) < class_dropout
    return StepDraws(noise, t, drop)


def denoiser_draws(schedule: NoiseSchedule, *, seed: int, stream: int, step: int, start: int, stop: int,
                   latent_shape: tuple[int, ...], class_dropout: float,
                   device: torch.device | str = "cpu") -> StepDraws:
    """Stage 2's draws for global rows ``[start, stop)`` of step ``step``, made on ``device``."""
    def draw(rows: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        drawn = draw_step(schedule, generator, rows, latent_shape, class_dropout)
        return drawn.noise, drawn.t, drawn.drop

    return StepDraws(*draw_rows(draw, seed=seed, stream=stream, step=step, start=start, stop=stop, device=device))


def augment_rows(augment: Callable[..., torch.Tensor], images: torch.Tensor, *, seed: int, stream: int,
                 step: int, start: int, block_rows: int = BLOCK_ROWS) -> torch.Tensor:
    """``augment(images, generator=...)`` applied block by block, ``images (n, C, H, W)`` = global rows
    ``[start, start + n)``: each block runs with its own generator on the full block (rows held by other
    ranks are zero padding, dropped afterwards), so every row gets the same augmentation whatever the
    world size. The augmentation must treat rows independently (DiffAugment does)."""
    stop, outputs = start + images.shape[0], []
    for block in covering_blocks(start, stop, block_rows):
        first = block * block_rows
        lo, hi = max(start, first), min(stop, first + block_rows)
        full = _full_block(images[lo - start:hi - start], lo - first, block_rows)  # (block, C, H, W)
        generator = block_generator(seed, stream, step, block, images.device)
        outputs.append(augment(full, generator=generator)[lo - first:hi - first])
    return torch.cat(outputs)


def _full_block(rows: torch.Tensor, offset: int, block_rows: int) -> torch.Tensor:
    """``rows`` placed at ``offset`` of a zero block of ``block_rows`` rows (itself when it is the block)."""
    if rows.shape[0] == block_rows:
        return rows
    before = rows.new_zeros((offset, *rows.shape[1:]))
    after = rows.new_zeros((block_rows - offset - rows.shape[0], *rows.shape[1:]))
    return torch.cat([before, rows, after])


@dataclass(frozen=True)
class RowKeys:
    """A rank's rows ``[start, stop)`` of step ``step``'s global batch: draws and augmentations keyed by
    global rows, made on ``device``."""

    seed: int
    step: int
    start: int
    stop: int
    device: torch.device | str = "cpu"

    def draw(self, draw: BlockDraw, stream: int) -> tuple[torch.Tensor, ...]:
        """The rows' share of ``draw`` on stream ``stream`` (see :func:`draw_rows`)."""
        return draw_rows(draw, seed=self.seed, stream=stream, step=self.step, start=self.start, stop=self.stop,
                         device=self.device)

    def augment(self, augment: Callable[..., torch.Tensor], images: torch.Tensor, stream: int) -> torch.Tensor:
        """``images`` (these rows) augmented on stream ``stream`` (see :func:`augment_rows`)."""
        return augment_rows(augment, images, seed=self.seed, stream=stream, step=self.step, start=self.start)
