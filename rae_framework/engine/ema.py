"""Exponential moving average of a model's weights, kept as a separate frozen copy of the model.

The copy is an ordinary module (never compiled, never wrapped in DDP), so sampling with it is exactly
sampling with the EMA weights, whatever wraps the trained model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * model`` after every optimiser step; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` (the unwrapped module) into the average."""
        ema_params = list(self.model.parameters())
        params = [param.detach().to(ema.dtype) for param, ema in zip(model.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights (the state dict of :attr:`model`, as checkpoints save it)."""
        self.model.load_state_dict(state)
