"""Helpers the benchmark scripts share (the scripts put this folder on ``sys.path`` when run directly).

``counted_flops`` counts a call's FLOPs with ``torch.utils.flop_counter`` (CPU SDPA included); ``engine_step``
is the engine's stage-2 training step (keyed draws, label drop, flow loss, backward, clip at 1.0, AdamW as
``build_optimizer`` picks it, EMA) as one callable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils import flop_counter

from rae_framework.engine import EMA, OptimizerConfig, build_optimizer, clip_gradients, draw_step, step_generator
from rae_stages.train_denoiser import STREAM_STAGE2


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn``; CPU SDPA (not in torch's table) is counted with torch's SDPA formulas."""
    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: forward,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}
    with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def engine_step(model: torch.nn.Module, schedule, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None,
                class_dropout: float = 0.1) -> Callable[[], None]:
    """The engine's training step on the batch ``x (B, C, h, w)``, ``y (B,)`` (on the model's device).

    The draws are made on the CPU for the step and moved to the batch's device, as the engine does; under
    ``dtype`` the forward runs in autocast. Each call is the next step (its own draws)."""
    optimizer, ema = build_optimizer(model.parameters(), OptimizerConfig(lr=2e-4)), EMA(model, 0.9995)
    model.train(False)  # the engine drops labels itself (stages.train_denoiser.label_dropout 'engine')
    counter = iter(range(10**9))

    def step() -> None:
        draws = draw_step(schedule, step_generator(0, STREAM_STAGE2, next(counter)), len(x), tuple(x.shape[1:]),
                          class_dropout).slice(0, len(x), x.device)
        labels = torch.where(draws.drop, torch.full_like(y, model.num_classes), y)  # (B,)
        with torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            losses = schedule.loss_at(model, x, labels, draws.noise, draws.t)  # (B,)
        losses.mean().backward()
        clip_gradients(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)

    return step
