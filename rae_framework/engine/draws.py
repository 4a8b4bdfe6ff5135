"""Seeded generators: every random draw of a stage comes from a generator keyed by ``(seed, stream, step)``."""

from __future__ import annotations

import torch


def step_generator(seed: int, stream: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator (on ``device``) whose state is a pure function of ``(seed, stream, step)``."""
    value = ((seed * 1_000_003 + stream) * 1_000_000_007 + step) % (2**63)
    return torch.Generator(device=device).manual_seed(value)
