"""AdamW, warm-up + constant/cosine/linear learning-rate schedules, gradient clipping."""

from __future__ import annotations

import math

import torch
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from rae_framework.config import OptimizerConfig
from rae_framework.errors import ConfigError


def build_optimizer(parameters, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable ``parameters`` with the kernel that ``config.implementation`` selects.

    The fused kernel updates every parameter in one pass (measured on this 2-core CPU for DiT^DH-S's 196.5M
    parameters: 118 ms per step against 630 ms for foreach); both are deterministic, so a resumed run
    repeats the same bits. ``auto`` falls back to foreach where the device or dtype has no fused kernel.
    """
    trainable = [param for param in parameters if param.requires_grad]
    fused = use_fused(trainable, config.implementation)
    return torch.optim.AdamW(trainable, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay,
                             fused=fused, foreach=not fused)


def use_fused(parameters: list[torch.Tensor], implementation: str) -> bool:
    """Whether AdamW runs fused: always for ``fused`` (an error where unsupported), never for ``foreach``."""
    supported = all(fused_supported(param) for param in parameters)
    if implementation == "fused" and not supported:
        unsupported = next(param for param in parameters if not fused_supported(param))
        raise ConfigError(f"optimizer.implementation 'fused': torch has no fused AdamW for {unsupported.dtype} "
                          f"parameters on {unsupported.device.type}; use 'auto' or 'foreach'")
    return implementation != "foreach" and supported


def fused_supported(param: torch.Tensor) -> bool:
    """torch's own test for its fused optimiser kernels (floating point, on a device type that has them)."""
    return param.is_floating_point() and param.device.type in _get_fused_kernels_supported_devices()


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
