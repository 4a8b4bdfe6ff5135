"""Learning-rate schedules: warm-up, hold at the peak, then constant/cosine/linear decay to min_lr."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rae_framework.config import OptimizerConfig
from rae_framework.engine.optim import build_optimizer, lr_factor
from rae_framework.errors import ConfigError


def _factors(total: int, **settings) -> list[float]:
    config = OptimizerConfig(lr=2e-4, min_lr=2e-5, **settings)
    return [lr_factor(step, config, total) for step in range(total + 1)]


def test_warm_up_is_linear_to_the_peak():
    assert _factors(10, warmup_steps=4, decay="linear")[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_hold_keeps_the_peak_then_linear_decay_reaches_min_lr():
    factors = _factors(20, warmup_steps=2, hold_steps=8, decay="linear")
    assert factors[2:11] == pytest.approx([1.0] * 9)  # steps 2..10: hold (decay starts at step 10)
    assert factors[15] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert factors[20] == pytest.approx(0.1)  # min_lr / lr


def test_cosine_decay_after_the_hold():
    factors = _factors(12, hold_steps=4, decay="cosine")
    assert factors[:5] == pytest.approx([1.0] * 5)
    assert factors[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[12] == pytest.approx(0.1)


def test_constant_ignores_min_lr():
    assert set(_factors(6, warmup_steps=1, decay="constant")[1:]) == {1.0}


def _adamw_run(implementation: str, steps: int, resume_at: int | None = None) -> torch.Tensor:
    """Train a small linear layer; optionally rebuild model and optimiser from state dicts at ``resume_at``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8)
    config = OptimizerConfig(lr=1e-2, weight_decay=0.05, implementation=implementation)
    optimizer = build_optimizer(model.parameters(), config)
    inputs = torch.randn(steps, 4, 16)
    for step in range(steps):
        if step == resume_at:
            weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
            model = torch.nn.Linear(16, 8)
            model.load_state_dict(weights)
            optimizer = build_optimizer(model.parameters(), config)
            optimizer.load_state_dict(state)
        model(inputs[step]).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return torch.cat([param.detach().flatten() for param in model.parameters()])


def test_auto_picks_the_fused_kernel_on_cpu_and_foreach_is_a_setting():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert build_optimizer(params, OptimizerConfig()).defaults["fused"] is True
    foreach = build_optimizer(params, OptimizerConfig(implementation="foreach")).defaults
    assert foreach["foreach"] is True and not foreach["fused"]


def test_fused_where_torch_has_no_kernel_is_a_config_error_and_auto_falls_back():
    params = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    with pytest.raises(ConfigError, match="no fused AdamW for torch.float32 parameters on meta"):
        build_optimizer(params, OptimizerConfig(implementation="fused"))
    assert not build_optimizer(params, OptimizerConfig(implementation="auto")).defaults["fused"]


def test_fused_resume_repeats_the_same_bits_and_agrees_with_foreach():
    fused = _adamw_run("fused", 12)
    assert torch.equal(_adamw_run("fused", 12), fused)  # deterministic run to run
    assert torch.equal(_adamw_run("fused", 12, resume_at=5), fused)  # state dict round trip: same bits
    torch.testing.assert_close(_adamw_run("foreach", 12), fused, rtol=1e-5, atol=1e-6)
