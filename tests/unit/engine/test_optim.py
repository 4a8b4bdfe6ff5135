"""Learning-rate schedules: warm-up, hold at the peak, then constant/cosine/linear decay to min_lr."""

from __future__ import annotations

import math

import pytest

from rae_framework.config import OptimizerConfig
from rae_framework.engine.optim import lr_factor


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
