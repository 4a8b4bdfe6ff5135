"""Checkpoints: atomic writes, keep-last-N, weights_only loading, RNG round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rae_framework.engine import checkpoints
from rae_framework.engine.checkpoints import CheckpointManager, rng_state, set_rng_state


def tensors(value: float) -> dict[str, dict[str, torch.Tensor]]:
    return {"model": {"w": torch.full((3,), value)}}


def test_keep_last_and_load_latest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        manager.save(step, tensors(step), {"extra": torch.tensor(step)})
    assert manager.steps() == [2, 3]
    weights, state = manager.load()
    assert state["step"] == 3 and torch.equal(weights["model"]["w"], torch.full((3,), 3.0))


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(1, tensors(1.0), {})
    real_save = torch.save

    def crash_after_writing(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoints.torch, "save", crash_after_writing)
    with pytest.raises(OSError, match="simulated"):
        manager.save(2, tensors(2.0), {})
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    assert manager.steps() == [1] and manager.latest() == 1
    weights, state = manager.load()
    assert state["step"] == 1 and torch.equal(weights["model"]["w"], torch.ones(3))
    manager.save(2, tensors(2.0), {})  # the stale temp folder does not block the next write
    assert manager.steps() == [1, 2]


def test_state_is_weights_only_loadable_and_rng_round_trips(tmp_path):
    generator = torch.Generator().manual_seed(5)
    manager = CheckpointManager(tmp_path)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    manager.save(1, tensors(0.0), {"rng": rng_state({"g": generator})})
    expected = (torch.rand(2), np.random.rand(2), random.random(), torch.rand(2, generator=generator))
    torch.manual_seed(9), np.random.seed(9), random.seed(9), generator.manual_seed(9)
    _, state = manager.load()  # uses weights_only=True
    set_rng_state(state["rng"], {"g": generator})
    got = (torch.rand(2), np.random.rand(2), random.random(), torch.rand(2, generator=generator))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])
