"""Sampling parity with the reference's own loop, for the released sampling configs' settings.

The reference samples (src/sample_ddp.py:246-272) with ``Transport.sample_ode`` (src/stage2/transport/
transport.py:410-454): torchdiffeq's fixed-grid Euler on the float32 grid ``shift(1 - linspace(0, 0.999, n))``
(integrators.py:100-101, interval from transport.py:136-137), guidance through the DDT's ``forward_with_cfg`` /
``forward_with_autoguidance`` on the doubled batch ``[z; z]`` with labels ``[y; null]`` (models/DDT.py:364-408),
keeping the first half. That loop is transcribed below, test-side, and run with the same network, weights and
noise as our sampler + guidance. Settings: Euler with 50 grid points (configs/stage2/sampling/**:
``num_steps: 50``), autoguidance 1.42 and CFG on ``[0, 1]``, the released shift sqrt(768*16*16 / 4096) = 6.93,
and s = 4.33, where the float32 grid starts at 1.0000001 (fixture README, transport.pt): the reference then
evaluates the model at 1.0000001 and leaves that first step unguided (``t <= t_max`` is false), and so must we.
Tolerance: 1e-4 (fixture README, sampler results).
"""

from __future__ import annotations

import math

import pytest
import torch

from rae_flow.configs import AutoguidanceConfig, CFGConfig, EulerConfig, ShiftedFlowConfig
from rae_flow.guidance import Autoguidance, ClassifierFreeGuidance
from rae_flow.samplers import Euler
from rae_flow.schedule import ShiftedFlow
from rae_framework.interop import load_official

NUM_STEPS = 50
SHIFTS = {"released-256": math.sqrt(768 * 16 * 16 / 4096), "first-point-above-1": math.sqrt(24 * 5 * 5 / 32)}


@pytest.fixture(scope="module")
def models(official):
    """The fixture's DiT^DH (main) and a perturbed copy of it as the autoguidance guide."""
    data = official("ddt_head.pt")
    main = load_official("DiTwDDTHead", data["config"], data["state_dict"]).eval()
    generator = torch.Generator().manual_seed(7)
    perturbed = {name: value + 0.05 * torch.randn(value.shape, generator=generator) if value.is_floating_point()
                 else value for name, value in data["state_dict"].items()}
    return main, load_official("DiTwDDTHead", data["config"], perturbed).eval()


def reference_grid(num_steps: int, shift: float) -> torch.Tensor:
    """integrators.py:100-101 in float32: ``t = 1 - linspace(0, 1 - 1/1000, n)``, then the time shift."""
    t = 1 - torch.linspace(0, 1 - 1 / 1000, num_steps)
    return shift * t / (1 + (shift - 1) * t)


def reference_cfg(model, x, t, y, scale, interval):
    """models/DDT.py:364-389: one pass on ``[half; half]`` with ``[y; null]``, guided where t_min <= t <= t_max."""
    half = x[: len(x) // 2]
    cond, uncond = model(torch.cat([half, half]), t, y).chunk(2)
    t_half = t[: len(t) // 2].view(-1, 1, 1, 1)
    guided = torch.where((t_half >= interval[0]) & (t_half <= interval[1]), uncond + scale * (cond - uncond), cond)
    return torch.cat([guided, guided])


def reference_autoguidance(model, guide, x, t, y, scale, interval):
    """models/DDT.py:391-408: both models on the whole doubled batch, per-sample interval."""
    main, weak = model(x, t, y), guide(x, t, y)
    inside = ((t >= interval[0]) & (t <= interval[1])).view(-1, 1, 1, 1)
    return torch.where(inside, weak + scale * (main - weak), main)


@torch.no_grad()
def reference_sample(drift, noise, labels, null_label, grid):
    """sample_ddp.py:255-273 with torchdiffeq's Euler on the decreasing grid (it negates time internally, which
    is exact: the model sees ``grid[k]`` and the step is ``(grid[k+1] - grid[k]) * v``); the first half."""
    x, y = torch.cat([noise, noise]), torch.cat([labels, torch.full_like(labels, null_label)])
    for t_cur, t_next in zip(grid[:-1], grid[1:]):
        x = x + (t_next - t_cur) * drift(x, torch.ones(len(x)) * t_cur, y)
    return x.chunk(2)[0]


def _ours(guidance, main, guide, noise, labels, shift) -> torch.Tensor:
    schedule = ShiftedFlow(ShiftedFlowConfig(shift=shift))
    velocity = guidance.velocity(main, labels, guide=guide if guidance.needs_guide else None)
    with torch.no_grad():
        return Euler(EulerConfig(num_steps=NUM_STEPS)).sample(velocity, noise, schedule).samples


def _inputs(main) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(43)
    noise = torch.randn(2, main.in_channels, main.input_size, main.input_size, generator=generator)
    return noise, torch.tensor([1, main.num_classes - 1])


@pytest.mark.parametrize("shift", SHIFTS.values(), ids=SHIFTS.keys())
def test_grid_is_the_reference_float32_grid(shift):
    ours = ShiftedFlow(ShiftedFlowConfig(shift=shift)).sampling_grid(NUM_STEPS)
    torch.testing.assert_close(ours, reference_grid(NUM_STEPS, shift), atol=0, rtol=0)
    assert (reference_grid(NUM_STEPS, shift)[0].item() > 1.0) == (shift == SHIFTS["first-point-above-1"])


@pytest.mark.slow  # 49 Euler steps of two models, about 20 s per case on 2 loaded cores
@pytest.mark.parametrize("shift", SHIFTS.values(), ids=SHIFTS.keys())
def test_autoguided_samples_match_the_reference_loop(models, shift):
    """configs/stage2/sampling/ImageNet256/DiTDHXL-DINOv2-B_AG.yaml:49-53: autoguidance 1.42 on [0, 1]."""
    main, guide = models
    noise, labels = _inputs(main)
    drift = lambda x, t, y: reference_autoguidance(main, guide, x, t, y, 1.42, (0.0, 1.0))  # noqa: E731
    expected = reference_sample(drift, noise, labels, main.num_classes, reference_grid(NUM_STEPS, shift))
    ours = _ours(Autoguidance(AutoguidanceConfig(scale=1.42, t_min=0.0, t_max=1.0)), main, guide, noise, labels,
                 shift)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("interval", [(0.0, 1.0), (0.3, 0.9)])
@pytest.mark.parametrize("shift", SHIFTS.values(), ids=SHIFTS.keys())
def test_cfg_samples_match_the_reference_loop(models, shift, interval):
    main, _ = models
    noise, labels = _inputs(main)
    drift = lambda x, t, y: reference_cfg(main, x, t, y, 1.5, interval)  # noqa: E731
    expected = reference_sample(drift, noise, labels, main.num_classes, reference_grid(NUM_STEPS, shift))
    ours = _ours(ClassifierFreeGuidance(CFGConfig(scale=1.5, t_min=interval[0], t_max=interval[1])), main, None,
                 noise, labels, shift)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
