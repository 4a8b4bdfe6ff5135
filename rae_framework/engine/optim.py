"""AdamW, warm-up + constant/cosine/linear learning-rate schedules, gradient clipping."""

from __future__ import annotations

import math

import torch

from rae_framework.config import OptimizerConfig


def build_optimizer(parameters, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable ``parameters`` (the foreach, non-fused implementation: bitwise stable)."""
    trainable = [param for param in parameters if param.requires_grad]
    return torch.optim.AdamW(trainable, lr=config.lr, betas=tuple(config.betas),
                             weight_decay=config.weight_decay, foreach=True)


def lr_factor(step: int, config: OptimizerConfig, total_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, hold, then the decay."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    floor = config.min_lr / config.lr
    decay_start = config.warmup_steps + config.hold_steps
    if config.decay == "constant" or step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
    if config.decay == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * (1.0 - progress)


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimizerConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimiser step; its state dict is ``weights_only``-loadable."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total_steps))


def clip_gradients(parameters, max_norm: float | None) -> float:
    """Clip the global gradient norm (when ``max_norm`` is set); returns the norm before clipping."""
    grads = [param for param in parameters if param.grad is not None]
    if max_norm is None:
        norms = [param.grad.detach().norm() for param in grads]
        return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
    return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))
